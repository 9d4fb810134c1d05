package stream

import (
	"context"
	"time"

	"encore.app/realtime/protocol"
)

// replayJob is a subscribe answer queued in order with events: the writer writes the
// "subscribed" frame, then the recovered events (from memory or the bus), then goes on
// with the queue, whose events of these channels all have seq > head.
type replayJob struct {
	reqID    string
	results  []protocol.ChannelResult
	channels []string // channels added by this subscribe
	head     uint64   // last dispatched seq when they were added

	recovery   bool               // the subscribe carried a cursor
	cursor     protocol.Cursor    //
	rec        *protocol.Recovery // decided at subscribe time (nil: decide in the writer)
	events     []*outEvent        // memory recovery
	fromBus    bool               // recover (cursor.Seq, head] from the bus
	checkAhead bool               // cursor beyond this instance's head: ask the bus
}

// runJob runs on the job goroutine; ctx ends with the connection.
func (c *Client) runJob(ctx context.Context, j *replayJob) error {
	e := c.e
	m := e.metrics
	rec := j.rec
	var release func()
	if j.recovery && rec == nil {
		if j.fromBus {
			var ok bool
			release, ok = e.acquireReplay(ctx)
			if !ok {
				c.requestClose(protocol.CloseOverloaded, "replay busy", e.replayRetryHint(), DiscReplayOverload, false)
				return nil
			}
			defer release()
		}
		rec = e.checkCursor(ctx, j)
		if j.checkAhead && rec.Recovered {
			c.liveAfter = max(c.liveAfter, j.cursor.Seq)
		}
	}
	switch {
	case rec != nil && rec.Recovered && j.cursor.Seq > j.head:
		rec.From, rec.To = j.cursor.Seq+1, j.cursor.Seq
	case rec != nil && rec.Recovered:
		rec.From, rec.To = j.cursor.Seq+1, j.head
	case rec != nil: // not recovered: live after head
		rec.From, rec.To = j.head+1, j.head
	}
	if rec != nil {
		switch {
		case !rec.Recovered:
			m.recFailed.Add(1)
		case rec.Source == "bus":
			m.recBus.Add(1)
		default:
			m.recMemory.Add(1)
		}
	}
	ans := protocol.Subscribed{Type: protocol.TypeSubscribed, ID: j.reqID, Op: protocol.TypeSubscribe,
		Results: j.results, Recovery: rec, Epoch: e.Epoch()}
	if err := c.writeFrame(protocol.Marshal(ans)); err != nil {
		return err
	}
	if rec == nil || !rec.Recovered {
		return nil
	}
	if len(j.events) > 0 {
		evs := j.events
		j.events = nil
		for len(evs) > 0 {
			n := min(len(evs), e.cfg.BatchMaxEvents)
			if err := c.writeEvents(evs[:n], true); err != nil {
				return err
			}
			evs = evs[n:]
		}
		return nil
	}
	if rec.Source != "bus" || j.cursor.Seq >= j.head {
		return nil
	}
	return c.replayFromBus(ctx, j)
}

// checkCursor decides a recovery that needs the bus's view of the stream.
func (e *Engine) checkCursor(ctx context.Context, j *replayJob) *protocol.Recovery {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ReplayTimeout)
	defer cancel()
	info, err := e.bus.Info(ctx)
	switch {
	case err != nil:
		e.log.Warn("replay: bus info", "err", err)
		return &protocol.Recovery{Reason: protocol.ReasonUnavailable}
	case info.Epoch != j.cursor.Epoch:
		return &protocol.Recovery{Reason: protocol.ReasonEpochMismatch}
	case j.cursor.Seq > info.LastSeq:
		return &protocol.Recovery{Reason: protocol.ReasonFuture}
	case j.checkAhead:
		// Behind the bus but ahead of this instance: events up to the cursor arrive
		// live and the client drops them by id.
		return &protocol.Recovery{Recovered: true, Source: "memory"}
	case info.FirstSeq > j.cursor.Seq+1:
		return &protocol.Recovery{Reason: protocol.ReasonTooOld}
	}
	return &protocol.Recovery{Recovered: true, Source: "bus"}
}

// replayFromBus streams (cursor.Seq, head] of the job's channels from the bus in frames
// of at most BatchMaxEvents. A failure half-way closes the connection (4103) so the
// client resumes from what it got: never a silent gap.
func (c *Client) replayFromBus(ctx context.Context, j *replayJob) error {
	e := c.e
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ReplayTimeout)
	defer cancel()
	var batch []*outEvent
	var writeErr error
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := c.writeEvents(batch, true)
		clear(batch)
		batch = batch[:0]
		return err
	}
	start := time.Now()
	err := e.bus.Replay(ctx, j.channels, j.cursor.Seq, j.head, func(ev *protocol.Event) error {
		batch = append(batch, &outEvent{seq: ev.Seq, channel: ev.Channel, enc: protocol.EncodeEvent(ev)})
		if len(batch) >= e.cfg.BatchMaxEvents {
			if writeErr = flush(); writeErr != nil {
				return writeErr
			}
		}
		return nil
	})
	if writeErr != nil {
		return writeErr
	}
	if err != nil {
		e.log.Warn("replay from bus failed", "session", c.session, "err", err, "after", time.Since(start))
		e.metrics.drop(DropReplayFailed, 1)
		c.requestClose(protocol.CloseOverloaded, "replay failed", e.retryHint(), DiscReplayFailed, false)
		return nil
	}
	return flush()
}

// acquireReplay takes one of MaxBusReplays slots, waiting at most ReplayWait.
func (e *Engine) acquireReplay(ctx context.Context) (release func(), ok bool) {
	t := time.NewTimer(e.cfg.ReplayWait)
	defer t.Stop()
	e.replayLoad.waiting.Add(1)
	defer e.replayLoad.waiting.Add(-1)
	select {
	case e.replaySlots <- struct{}{}:
		start := time.Now()
		return func() { e.replayLoad.observe(time.Since(start)); <-e.replaySlots }, true
	case <-t.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	}
}
