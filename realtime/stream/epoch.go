package stream

import (
	"context"
	"sync"
	"time"

	"encore.app/realtime/protocol"
)

// A bus stream that is deleted and recreated (operator action, lost storage) starts a
// new epoch whose sequences begin again at 1. An engine that kept its old position
// would drop the new stream's events as "already dispatched" and answer cursors with
// its stale epoch. The engine asks the bus for the epoch every EpochCheckInterval (the
// bus also recreates a missing stream on that call); when it changed, resync:
//
//  1. the live subscription is cancelled and its late deliveries are ignored;
//  2. the window is emptied and the position moved to the new stream's head;
//  3. every connection is closed with 4000 "stream recreated", so clients reconnect
//     and resubscribe with their cursor, which is answered "not recovered"
//     (epoch_mismatch): the application resyncs instead of silently missing events;
//  4. a new live subscription starts at the new head.

// resubscriber is the engine's live subscription with its generation.
type resubscriber struct {
	mu     sync.RWMutex // held for reading around one dispatch, for writing by resync
	gen    uint64
	cancel context.CancelFunc
}

// subscribeBus starts the live subscription after seq, as a new generation.
func (e *Engine) subscribeBus(after uint64) error {
	r := &e.resub
	r.mu.Lock()
	r.gen++
	gen := r.gen
	if r.cancel != nil {
		r.cancel()
	}
	sctx, cancel := context.WithCancel(e.ctx)
	r.cancel = cancel
	r.mu.Unlock()
	h := func(ev *protocol.Event) {
		r.mu.RLock()
		defer r.mu.RUnlock()
		if r.gen != gen {
			return // a delivery of a cancelled subscription
		}
		e.dispatch(ev)
	}
	if err := e.bus.Subscribe(sctx, after, h); err != nil {
		cancel()
		return err
	}
	return nil
}

// checkEpoch compares the bus's epoch with the engine's and resyncs on a change. A
// bus that cannot answer is left alone (the next tick asks again).
func (e *Engine) checkEpoch() {
	ctx, cancel := context.WithTimeout(e.ctx, e.cfg.EpochCheckInterval)
	defer cancel()
	info, err := e.bus.Info(ctx)
	if err != nil || info.Epoch == e.Epoch() {
		return
	}
	e.log.Warn("bus stream recreated: resetting position and closing every connection",
		"old_epoch", e.Epoch(), "new_epoch", info.Epoch, "head", info.LastSeq)
	r := &e.resub
	r.mu.Lock()
	r.gen++ // deliveries of the old subscription are ignored from here on
	if r.cancel != nil {
		r.cancel()
		r.cancel = nil
	}
	e.pool.mu.Lock()
	e.pool.window = ring{buf: make([]*outEvent, len(e.pool.window.buf))}
	e.pool.head, e.pool.floor = info.LastSeq, info.LastSeq
	e.pool.floorNow.Store(info.LastSeq)
	e.pool.gen++ // events of the old stream waiting for the fan-out are dropped
	e.fanned.Store(info.LastSeq)
	e.epoch.Store(&info.Epoch)
	e.pool.mu.Unlock()
	r.mu.Unlock()
	e.epochChanges.Add(1)
	for _, c := range e.snapshotClients() {
		c.Kick(nil, protocol.CloseReconnect, "stream recreated", 0)
	}
	for {
		err := e.subscribeBus(info.LastSeq)
		if err == nil {
			return
		}
		e.log.Warn("resubscribe after epoch change", "err", err)
		if !sleepCtx(e.ctx, nil, time.Second) {
			return
		}
	}
}

// EpochChanges counts stream recreations this engine noticed and resynced after.
func (e *Engine) EpochChanges() uint64 { return e.epochChanges.Load() }
