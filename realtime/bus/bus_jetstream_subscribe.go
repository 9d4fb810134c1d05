package bus

// The live subscription: an ordered consumer per Subscribe, recreated on failure.

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Subscribe implements Bus. after is a stream sequence: delivery starts at after+1
// (after == 0: from the oldest retained event). ctx governs the whole subscription,
// not only its setup. h runs on one goroutine, one event at a time, in sequence order;
// no sequence is delivered twice by one subscription. When the live consumer fails
// (server restart, reconnect) it is recreated from the last delivered sequence after a
// backoff, and the failure is logged. If the stream is recreated (epoch change), the
// caller must cancel the subscription and subscribe again from the new stream's head.
func (j *JetStream) Subscribe(ctx context.Context, after uint64, h Handler) error {
	if h == nil {
		return errors.New("bus: subscribe: nil handler")
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return fmt.Errorf("bus: subscribe: %w", ErrClosed)
	}
	j.wg.Add(1)
	j.mu.Unlock()

	runCtx, cancel := context.WithCancel(ctx)
	stopClose := context.AfterFunc(j.ctx, cancel)
	ls, err := j.openLive(ctx, after)
	if err != nil {
		stopClose()
		cancel()
		j.wg.Done()
		return j.wrap("subscribe", err)
	}
	go func() {
		defer j.wg.Done()
		defer cancel()
		defer stopClose()
		j.deliver(runCtx, ls, after, h)
	}()
	return nil
}

type liveSub struct {
	cons jetstream.Consumer
	it   jetstream.MessagesContext
}

func (j *JetStream) openLive(ctx context.Context, after uint64) (*liveSub, error) {
	cfg := jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: liveInactive,
		MaxResetAttempts:  liveResetAttempts,
	}
	if after > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = after + 1
	}
	cons, err := j.js.OrderedConsumer(ctx, j.cfg.Stream, cfg)
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages(jetstream.PullExpiry(liveExpiry), jetstream.PullHeartbeat(liveHeartbeat))
	if err != nil {
		j.deleteConsumer(cons)
		return nil, err
	}
	return &liveSub{cons: cons, it: it}, nil
}

func (j *JetStream) closeLive(ls *liveSub) {
	ls.it.Stop()
	j.deleteConsumer(ls.cons)
}

func (j *JetStream) deleteConsumer(cons jetstream.Consumer) {
	ci := cons.CachedInfo()
	if ci == nil || !j.nc.IsConnected() {
		return // the server drops it after its inactivity threshold
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := j.js.DeleteConsumer(ctx, j.cfg.Stream, ci.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		j.log.Debug("bus: delete consumer", "consumer", ci.Name, "err", err)
	}
}

func (j *JetStream) deliver(ctx context.Context, ls *liveSub, last uint64, h Handler) {
	// Stop the iterator as soon as ctx is done, also while Next is busy recreating
	// the ordered consumer (which does not watch ctx).
	stop := context.AfterFunc(ctx, func() { ls.it.Stop() })
	defer func() {
		stop()
		j.closeLive(ls)
	}()
	failures := 0
	for {
		msg, err := ls.it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			j.log.Warn("bus: live consumer failed, recreating", "after", last, "err", err)
			stop()
			j.closeLive(ls)
			for {
				failures++
				if !sleepCtx(ctx, backoff(failures)) {
					// the deferred closeLive stops and deletes ls again: harmless
					return
				}
				nls, err := j.openLive(ctx, last)
				if err == nil {
					ls = nls
					stop = context.AfterFunc(ctx, func() { nls.it.Stop() })
					break
				}
				j.log.Warn("bus: recreate live consumer", "after", last, "err", err)
			}
			continue
		}
		failures = 0
		meta, err := msg.Metadata()
		if err != nil {
			n := j.malformed.Add(1)
			j.log.Warn("bus: skipping message without metadata", "err", err, "malformed_total", n)
			continue
		}
		seq := meta.Sequence.Stream
		if seq <= last {
			continue
		}
		last = seq
		if ctx.Err() != nil {
			return // cancelled while Next returned: no handler call after ctx is done
		}
		if ev, ok := j.decode(msg, seq); ok {
			h(ev)
		}
	}
}
