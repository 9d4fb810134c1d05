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
// (Bus.Last), for a page's initial load. A JetStream stream has no "previous message of
// this subject" request, but it reads forward from any sequence on one subject from
// its per-subject index (a direct get: next_by_subj, in batches) and knows each
// subject's message count. Last reads the channel backwards in segments, each one
// forward in one batch (lastDirect). Neither the stream nor the channel is scanned,
// and no consumer is created. Direct gets are answered by any replica, so on a
// replicated stream the result's tail is checked with the stream leader
// (verifyReplayTail): a lagging replica is an ErrUnavailable, never a silent gap.

// errProbed ends a direct-get batch early.
var errProbed = errors.New("probed")

// lastMaxProbes bounds the segment reads of one Last (a handful answer).
const lastMaxProbes = 64

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

// lastDirect reads the newest n events of subj with seq <= upTo. It reads segments
// of the channel backwards from upTo, each one forward in one direct-get batch: the
// first segment is sized from the channel's share of the stream (its message count,
// from the per-subject index, and the stream's range; one info request), a segment that
// falls short doubles the next one, and
// one that holds more than the answer needs is narrowed (from the density it showed)
// before it is read again. Each batch costs the server a count from the segment's
// start within one message block; a few batches answer.
func (j *JetStream) lastDirect(ctx context.Context, subj string, upTo uint64, n int) ([]*protocol.Event, error) {
	first, last, total, err := j.subjectState(ctx, subj)
	if err != nil {
		return nil, err
	}
	if total == 0 || first > upTo {
		return nil, nil
	}
	// The channel's average density over the stream sizes the first segment.
	span := float64(max(last, upTo)-first+1) / float64(total)
	gap := uint64(1.25*float64(n)*span) + 1
	var acc []*protocol.Event // the channel's events in (hi, upTo], oldest first
	hi := upTo
	var top uint64 // highest seq read, for the tail check
	for rounds := 0; len(acc) < n && hi >= first; rounds++ {
		if rounds > lastMaxProbes {
			return nil, j.wrap("last", fmt.Errorf("%w: no answer after %d reads", ErrUnavailable, rounds))
		}
		lo := first
		if hi+1-first > gap {
			lo = hi + 1 - gap
		}
		need := n - len(acc)
		seg, full, err := j.readSegment(ctx, subj, lo, hi, 4*need)
		if err != nil {
			return nil, err
		}
		if full {
			// More than 4x what is missing lies in [lo, hi]: narrow the segment to the
			// density its first part showed, and read it again.
			width := seg[len(seg)-1].Seq - lo + 1
			next := uint64(1.25*float64(need)*float64(width)/float64(len(seg))) + 1
			gap = max(min(next, gap/2), 1)
			continue
		}
		if len(seg) > 0 && top == 0 {
			top = seg[len(seg)-1].Seq
		}
		acc = append(seg, acc...)
		hi = lo - 1
		if lo == first {
			break
		}
		gap *= 2
	}
	if len(acc) > n {
		acc = acc[len(acc)-n:]
	}
	if j.cfg.Replicas > 1 {
		// Any replica answers direct gets: check the tail with the leader.
		if err := j.verifyReplayTail(ctx, []string{subj}, max(top, hi), upTo); err != nil {
			return nil, err
		}
	}
	return acc, nil
}

// subjectState is one STREAM.INFO request filtered on subj: the stream's first and
// last sequences and subj's message count (from the per-subject index).
func (j *JetStream) subjectState(ctx context.Context, subj string) (first, last, count uint64, err error) {
	req, _ := json.Marshal(map[string]string{"subjects_filter": subj})
	msg, err := j.nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO."+j.cfg.Stream, req)
	if err != nil {
		return 0, 0, 0, j.wrap("last", err)
	}
	var r struct {
		State struct {
			FirstSeq uint64            `json:"first_seq"`
			LastSeq  uint64            `json:"last_seq"`
			Subjects map[string]uint64 `json:"subjects"`
		} `json:"state"`
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &r); err != nil {
		return 0, 0, 0, j.wrap("last", err)
	}
	if r.Error != nil {
		return 0, 0, 0, j.wrap("last", fmt.Errorf("%w: %d %s", ErrUnavailable, r.Error.Code, r.Error.Description))
	}
	return r.State.FirstSeq, r.State.LastSeq, r.State.Subjects[subj], nil
}

// readSegment reads the messages of subj in [lo, hi] in one direct-get batch; full
// reports that more than max of them exist (seg then holds the first max+1).
func (j *JetStream) readSegment(ctx context.Context, subj string, lo, hi uint64, max int) (seg []*protocol.Event, full bool, err error) {
	for next := lo; next <= hi; {
		got, done := 0, false
		var lastSeen uint64
		err := jsdirect.Get(ctx, j.nc, j.cfg.Stream, jsdirect.Request{Seq: next, NextBySubj: subj, Batch: max + 1 - len(seg)}, func(m *jsdirect.Msg) error {
			got++
			lastSeen = m.Seq
			if m.Seq > hi {
				done = true
				return errProbed
			}
			if ev, ok := j.decodeDirect(m); ok {
				seg = append(seg, ev)
			}
			if m.Pending == 0 {
				done = true
			}
			return nil
		})
		switch {
		case errors.Is(err, errProbed), errors.Is(err, jsdirect.ErrNotFound):
			done = true
		case err != nil:
			return nil, false, j.wrapDirect(err)
		}
		if len(seg) > max {
			return seg, true, nil
		}
		if done || got == 0 {
			break
		}
		next = lastSeen + 1 // the batch was cut by the server's byte bound
	}
	return seg, false, nil
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
