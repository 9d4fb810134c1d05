package bus

// Publishing: validation, the stored body, async publishes and their acks.

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"encore.app/realtime/protocol"
)

// Publish implements Bus. It fills in, in place, the ID (a NUID) and TS (now, unix ms)
// of events that lack them, so that a caller retrying the same events after an error
// is deduplicated. Seq is not touched: it is in the acks. Invalid events (channel,
// ID, data) fail the whole call before anything is sent, with an error wrapping
// protocol.ErrBadChannel or protocol.ErrBadEvent. If any event fails to be acked, the
// call returns nil acks and an error (wrapping ErrUnavailable for connectivity
// problems); some events may then have been appended: retry with the same IDs.
func (j *JetStream) Publish(ctx context.Context, evs []*protocol.Event) ([]Ack, error) {
	if j.isClosed() {
		return nil, fmt.Errorf("bus: publish: %w", ErrClosed)
	}
	if len(evs) == 0 {
		return nil, nil
	}
	if err := prepareEvents(evs, 1<<16); err != nil {
		return nil, err
	}
	msgs := make([]*nats.Msg, len(evs))
	for i, ev := range evs {
		m := nats.NewMsg(j.prefix + ev.Channel)
		m.Data = appendBody(nil, ev)
		msgs[i] = m
	}

	acks := make([]Ack, len(evs))
	pending := make([]int, len(evs))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 0; ; attempt++ {
		failed, err := j.publishOnce(ctx, evs, msgs, pending, acks)
		if err == nil {
			return acks, nil
		}
		// A deleted stream shows as "no responders": recreate it once and resend
		// what was not acked (IDs make the resend safe).
		if attempt == 0 && isNoStream(err) && ctx.Err() == nil && !j.isClosed() {
			if _, ierr := j.Info(ctx); ierr == nil {
				pending = failed
				continue
			}
		}
		return nil, j.wrap("publish", err)
	}
}

// publishOnce sends msgs[idx] asynchronously and waits for their acks, filling acks.
// It returns the indices that failed and the first error.
func (j *JetStream) publishOnce(ctx context.Context, evs []*protocol.Event, msgs []*nats.Msg, idx []int, acks []Ack) ([]int, error) {
	futures := make([]jetstream.PubAckFuture, len(idx))
	var firstErr error
	var failed []int
	for k, i := range idx {
		m := nats.NewMsg(msgs[i].Subject) // fresh headers for a resend
		m.Data = msgs[i].Data
		f, err := j.js.PublishMsgAsync(m, jetstream.WithMsgID(evs[i].ID), jetstream.WithExpectStream(j.cfg.Stream))
		if err != nil {
			firstErr = err
			failed = append(failed, idx[k:]...)
			break
		}
		futures[k] = f
	}
	for k, f := range futures {
		if f == nil {
			break
		}
		i := idx[k]
		select {
		case pa := <-f.Ok():
			acks[i] = Ack{ID: evs[i].ID, Seq: pa.Sequence, Duplicate: pa.Duplicate}
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = err
			}
			failed = append(failed, i)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return failed, firstErr
}

// decode turns a stored message into an event; the subject is authoritative for the
// channel. Failures are counted and logged; the message is skipped by the caller.
func (j *JetStream) decode(msg jetstream.Msg, seq uint64) (*protocol.Event, bool) {
	subj := msg.Subject()
	var e *protocol.Event
	err := fmt.Errorf("subject outside prefix %q", j.prefix)
	if ch, ok := strings.CutPrefix(subj, j.prefix); ok && ch != "" {
		e, err = decodeBody(seq, ch, msg.Data())
	}
	if err != nil {
		n := j.malformed.Add(1)
		j.log.Warn("bus: skipping malformed message", "seq", seq, "subject", subj, "err", err, "malformed_total", n)
		return nil, false
	}
	return e, true
}
