package bus

// Replay: an ephemeral, ack-less pull consumer over the channels' subjects.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"encore.app/realtime/protocol"
)

// Replay implements Bus. It uses an ephemeral, memory-backed, ack-less pull consumer
// (what an ordered consumer uses) filtered on the channels' subjects and starting at
// after+1, fetches only what is stored (no-wait fetches, never waiting for new events)
// and deletes the consumer before returning. Channel names are checked with
// protocol.ValidateChannel (errors wrap protocol.ErrBadChannel). A lost delivery is
// detected (consumer sequence gap) and reported as an error wrapping ErrUnavailable,
// never as a silently shorter replay. fn's error is returned as is.
func (j *JetStream) Replay(ctx context.Context, channels []string, after, upTo uint64, fn func(*protocol.Event) error) error {
	if j.isClosed() {
		return fmt.Errorf("bus: replay: %w", ErrClosed)
	}
	if upTo <= after || len(channels) == 0 {
		return nil
	}
	subjects, err := replayChannels(channels, 1<<16)
	if err != nil {
		return err
	}
	for i, ch := range subjects {
		subjects[i] = j.prefix + ch
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(j.ctx, cancel)()

	return replayContinuing(ctx, after, func(after uint64) (uint64, error) {
		return j.replayFrom(ctx, subjects, after, upTo, fn)
	})
}

// replicaBehindWait is the first pause before a replay goes on with a new consumer
// after its replica was found behind or its delivery had a gap (doubling up to 1 s).
const replicaBehindWait = 20 * time.Millisecond

// errDeliveryGap is wrapped (with ErrUnavailable) by a replay consumer's error when its
// consumer sequence skipped: messages handed to a pull request that had already
// expired (a loaded machine) are not delivered again by an ack-less consumer.
var errDeliveryGap = errors.New("delivery gap")

// replayContinuing runs once (one replay consumer) from after. A consumer placed on a
// replica that has not stored (or applied) the newest events delivers less than the
// stream leader holds, and verifyReplayTail reports errReplicaBehind. The events
// delivered so far were in order, so the replay goes on from the last one with a new
// consumer (placed anew; the replica catches up meanwhile) until ctx ends, instead of
// failing the client, which would come back to the same replica. A delivery gap
// (errDeliveryGap) goes on the same way: the events before it were delivered in order.
// Any other outcome is returned as is.
func replayContinuing(ctx context.Context, after uint64, once func(after uint64) (last uint64, err error)) error {
	wait := replicaBehindWait
	for {
		last, err := once(after)
		if !errors.Is(err, errReplicaBehind) && !errors.Is(err, errDeliveryGap) {
			return err
		}
		if !sleepCtx(ctx, wait) {
			return err
		}
		after, wait = last, min(2*wait, time.Second)
	}
}

// replayFrom is one replay consumer's part of Replay: every stored event of subjects
// with after < seq <= upTo, in order, to fn. It returns the sequence of the last
// message it received, and errReplicaBehind (wrapped) when the consumer's replica
// delivered less than the stream holds.
func (j *JetStream) replayFrom(ctx context.Context, subjects []string, after, upTo uint64, fn func(*protocol.Event) error) (uint64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cc := jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: replayInactive,
	}
	if after > 0 {
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = after + 1
	}
	if len(subjects) == 1 {
		cc.FilterSubject = subjects[0]
	} else {
		cc.FilterSubjects = subjects
	}
	cons, err := j.js.CreateConsumer(ctx, j.cfg.Stream, cc)
	if err != nil {
		return after, j.wrap("replay", err)
	}
	defer j.deleteConsumer(cons)

	pending := cons.CachedInfo().NumPending // matching messages stored after `after`
	var lastCons uint64                     // consumer sequence of the last message
	noResp := 0                             // fetches answered "no responders" (fetchRetry)
	lastSeq := after                        // stream sequence of the last message
	for pending > 0 {
		if err := ctx.Err(); err != nil {
			return lastSeq, j.wrap("replay", err)
		}
		batch := replayBatch
		if span := upTo - after; span < uint64(batch) {
			batch = int(span)
		}
		mb, err := cons.FetchNoWait(batch)
		if err != nil {
			if fetchRetry(ctx, err, &noResp) {
				continue
			}
			return lastSeq, j.wrap("replay", err)
		}
		got := 0
		done := false
		for msg := range mb.Messages() {
			if done {
				continue // drain
			}
			got++
			meta, err := msg.Metadata()
			if err != nil {
				n := j.malformed.Add(1)
				j.log.Warn("bus: replay: skipping message without metadata", "err", err, "malformed_total", n)
				continue
			}
			if meta.Sequence.Consumer != lastCons+1 {
				cancel()
				return lastSeq, j.wrap("replay", fmt.Errorf("%w: %w after consumer seq %d", ErrUnavailable, errDeliveryGap, lastCons))
			}
			lastCons = meta.Sequence.Consumer
			pending = meta.NumPending
			seq := meta.Sequence.Stream
			lastSeq = seq
			if seq > upTo {
				done = true
				continue
			}
			if ev, ok := j.decode(msg, seq); ok {
				if err := fn(ev); err != nil {
					cancel()
					return lastSeq, err
				}
			}
			if seq >= upTo {
				done = true
			}
		}
		if err := mb.Error(); err != nil {
			if got == 0 && fetchRetry(ctx, err, &noResp) {
				continue
			}
			return lastSeq, j.wrap("replay", err)
		}
		if done {
			return lastSeq, nil
		}
		if got == 0 {
			// Nothing came although the last count said more is stored: ask again
			// (retention may have dropped it, or the server was slow to answer).
			ci, err := cons.Info(ctx)
			if err != nil {
				return lastSeq, j.wrap("replay", err)
			}
			pending = ci.NumPending
			if pending > 0 && !sleepCtx(ctx, 10*time.Millisecond) {
				return lastSeq, j.wrap("replay", ctx.Err())
			}
		}
	}
	return lastSeq, j.verifyReplayTail(ctx, subjects, lastSeq, upTo)
}
