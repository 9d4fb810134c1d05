package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"encore.app/internal/jsdirect"
	"encore.app/realtime/protocol"
)

// Channel history: the newest n events of one channel at or below a sequence
// (Bus.Last), for a page's initial load. A JetStream stream has no "previous message
// of this subject" request, but it counts: a direct get of one message from seq s on a
// subject answers with how many messages of that subject follow (Nats-Num-Pending),
// from the stream's per-subject index. Last uses that count to find, in a few
// requests, a start s from which the channel holds between n and 2n events up to
// upTo (interpolation between two probes, with bisection to guarantee progress), then
// reads them in one batch (direct get, next_by_subj) and keeps the newest n. Neither
// the stream nor the channel is scanned, and no consumer is created. Direct gets are
// answered by any replica, so the result's tail is checked with the stream leader
// (verifyReplayTail): a lagging replica is an ErrUnavailable, never a silent gap.

// lastMaxProbes bounds the search: interpolation alternating with bisection over a
// 2^64 range ends well before.
const lastMaxProbes = 128

// Last implements Bus.
func (j *JetStream) Last(ctx context.Context, channel string, upTo uint64, n int, fn func(*protocol.Event) error) error {
	if j.isClosed() {
		return fmt.Errorf("bus: last: %w", ErrClosed)
	}
	if err := protocol.ValidateChannel(channel, 1<<16); err != nil {
		return fmt.Errorf("bus: last: %w", err)
	}
	if n <= 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(j.ctx, cancel)()
	if upTo == 0 {
		info, err := j.Info(ctx)
		if err != nil {
			return err
		}
		upTo = info.LastSeq
	}
	if upTo == 0 {
		return nil
	}
	subj := j.prefix + channel
	evs, err := j.lastDirect(ctx, subj, upTo, n)
	if errors.Is(err, jsdirect.ErrNoDirect) && j.nc.IsConnected() {
		// The stream does not allow direct gets (created by an older version and not
		// updated): read the channel with a consumer instead.
		j.log.Warn("bus: last: direct gets unavailable, reading the channel with a consumer", "stream", j.cfg.Stream)
		return LastByReplay(ctx, j, channel, upTo, n, fn)
	}
	if err != nil {
		return err
	}
	for _, ev := range evs {
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// lastDirect finds and reads the newest n events of subj with seq <= upTo.
func (j *JetStream) lastDirect(ctx context.Context, subj string, upTo uint64, n int) ([]*protocol.Event, error) {
	// count(s) is the number of messages of subj with seq >= s (to the stream's end).
	probes := 0
	count := func(s uint64) (uint64, error) {
		probes++
		var c uint64
		err := jsdirect.Get(ctx, j.nc, j.cfg.Stream, jsdirect.Request{Seq: s, NextBySubj: subj, Batch: 1}, func(m *jsdirect.Msg) error {
			c = m.Pending + 1
			return nil
		})
		if errors.Is(err, jsdirect.ErrNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, j.wrapDirect(err)
		}
		return c, nil
	}
	// in(s) is the number of messages of subj in [s, upTo]: count(s) minus the messages
	// after upTo, counted after it, so that events appended meanwhile make it an
	// underestimate (a start a little earlier than needed), never an overestimate
	// (fewer than n events read although the channel holds more).
	in := func(s uint64) (uint64, error) {
		c, err := count(s)
		if err != nil {
			return 0, err
		}
		beyond, err := count(upTo + 1)
		if err != nil || c < beyond {
			return 0, err
		}
		return c - beyond, nil
	}
	want := uint64(n)
	lo, hi := uint64(1), upTo+1 // in(lo) > 2n, in(hi) = 0 < n
	cLo, err := in(lo)
	if err != nil {
		return nil, err
	}
	start := lo
	if cLo > 2*want {
		cHi := uint64(0)
		for bisect := false; ; bisect = !bisect {
			if probes > lastMaxProbes || hi-lo <= 1 {
				start = lo // cannot happen for a consistent store; read from lo
				break
			}
			var mid uint64
			if bisect {
				mid = lo + (hi-lo)/2
			} else {
				// Where the channel would hold 1.5n events if they were spread evenly.
				frac := (1.5 * float64(want)) / float64(cLo-cHi)
				mid = hi - uint64(frac*float64(hi-lo))
			}
			mid = min(max(mid, lo+1), hi-1)
			c, err := in(mid)
			if err != nil {
				return nil, err
			}
			switch {
			case c >= want && c <= 2*want:
				start = mid
			case c > 2*want:
				lo, cLo = mid, c
				continue
			default:
				hi, cHi = mid, c
				continue
			}
			break
		}
	}
	// Read [start, upTo] (at most 2n events, or all the channel holds) and keep the
	// newest n.
	var out []*protocol.Event
	next := start
	last := start - 1
	for next <= upTo {
		got := 0
		done := false
		err := jsdirect.Get(ctx, j.nc, j.cfg.Stream, jsdirect.Request{Seq: next, NextBySubj: subj, Batch: 2*n + 1}, func(m *jsdirect.Msg) error {
			got++
			if m.Seq > upTo {
				done = true
				return nil
			}
			last = m.Seq
			if ev, ok := j.decodeDirect(m); ok {
				out = append(out, ev)
				if len(out) > n {
					out = out[1:]
				}
			}
			if m.Pending == 0 {
				done = true
			}
			return nil
		})
		if errors.Is(err, jsdirect.ErrNotFound) {
			break
		}
		if err != nil {
			return nil, j.wrapDirect(err)
		}
		if done || got == 0 {
			break
		}
		next = last + 1
	}
	if err := j.verifyReplayTail(ctx, []string{subj}, last, upTo); err != nil {
		return nil, err
	}
	return out, nil
}

// decodeDirect is decode for a direct-get message.
func (j *JetStream) decodeDirect(m *jsdirect.Msg) (*protocol.Event, bool) {
	var w wireEvent
	ch, ok := strings.CutPrefix(m.Subject, j.prefix)
	err := json.Unmarshal(m.Data, &w)
	if err == nil && (!ok || ch == "") {
		err = fmt.Errorf("subject outside prefix %q", j.prefix)
	}
	if err == nil && w.Channel != "" && w.Channel != ch {
		err = fmt.Errorf("body channel %q differs from subject", w.Channel)
	}
	if err != nil {
		n := j.malformed.Add(1)
		j.log.Warn("bus: skipping malformed message", "seq", m.Seq, "subject", m.Subject, "err", err, "malformed_total", n)
		return nil, false
	}
	return &protocol.Event{ID: w.ID, Seq: m.Seq, Channel: ch, Type: w.Type, Data: w.Data, TS: w.TS}, true
}

func (j *JetStream) wrapDirect(err error) error {
	if errors.Is(err, jsdirect.ErrNoDirect) {
		if j.nc.IsConnected() {
			return err // Last falls back to a consumer
		}
		return j.wrap("last", fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
	return j.wrap("last", err)
}

// LastByReplay implements Bus.Last with Replay: it reads every retained event of the
// channel up to upTo and keeps the newest n. Correct for any Bus, but its cost grows
// with what the channel holds: a fallback, and a start for a new implementation.
func LastByReplay(ctx context.Context, b interface {
	Replay(ctx context.Context, channels []string, after, upTo uint64, fn func(*protocol.Event) error) error
}, channel string, upTo uint64, n int, fn func(*protocol.Event) error) error {
	if n <= 0 {
		return nil
	}
	if upTo == 0 {
		upTo = math.MaxUint64
	}
	ring := make([]*protocol.Event, 0, n)
	if err := b.Replay(ctx, []string{channel}, 0, upTo, func(ev *protocol.Event) error {
		if len(ring) == n {
			copy(ring, ring[1:])
			ring = ring[:n-1]
		}
		ring = append(ring, ev)
		return nil
	}); err != nil {
		return err
	}
	for _, ev := range ring {
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// Last implements Bus; its duration is the caller's business (ctx), like Replay.
func (k *Breaker) Last(ctx context.Context, channel string, upTo uint64, n int, fn func(*protocol.Event) error) error {
	return k.call(ctx, "last", 0, func(ctx context.Context) error {
		return k.b.Last(ctx, channel, upTo, n, fn)
	})
}
