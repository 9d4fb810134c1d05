package flag

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Source is what the engine needs: the current snapshot and a way to hear about
// changes. KVStore and MemoryStore implement it.
type Source interface {
	// Evaluator returns the current snapshot. It never blocks and never returns nil.
	Evaluator() *Evaluator
	// Subscribe registers for change notifications (see Subscription).
	Subscribe() (*Subscription, error)
}

// Store is a Source that can also be changed and audited. Safe for concurrent use.
type Store interface {
	Source
	// Change applies c to flag name on behalf of actor, records it in the audit log
	// and returns the new definition. When it returns, this store's own snapshot
	// already shows the change; other instances see it within milliseconds.
	// Errors: ErrInvalid (bad name or change), ErrConflict (IfRevision), ErrClosed.
	Change(ctx context.Context, name string, c Change, actor string) (Flag, error)
	// Audit returns up to limit most recent audit entries, newest first.
	Audit(ctx context.Context, limit int) ([]AuditEntry, error)
	// Close stops watching and waits for the store's goroutines. Subscriptions'
	// channels are closed.
	Close() error
}

var (
	_ Store = (*KVStore)(nil)
	_ Store = (*MemoryStore)(nil)
)

// AuditEntry records one change.
type AuditEntry struct {
	Seq    uint64    `json:"seq"`   // position in the audit log
	Time   time.Time `json:"time"`  // when the change was written
	Actor  string    `json:"actor"` // who made it (admin key name)
	Flag   string    `json:"flag"`  // flag name
	Reason string    `json:"reason,omitempty"`
	Before *Flag     `json:"before,omitempty"` // nil when the flag did not exist
	After  Flag      `json:"after"`
}

// MaxSubscribers bounds open subscriptions per store.
const MaxSubscribers = 1024

// Subscription delivers change notifications. C receives a value after the snapshot
// changes; it has capacity 1 and coalesces, so a slow reader sees one notification for
// many changes and must then read Evaluator() (never a stale one: the snapshot is
// replaced before C is signalled). C is closed by Close or when the store closes.
type Subscription struct {
	C <-chan struct{}

	c    chan struct{} // same as C; closed under hub.mu
	hub  *hub
	once sync.Once
}

// Close unregisters the subscription and closes C. Idempotent.
func (s *Subscription) Close() {
	s.once.Do(func() { s.hub.remove(s) })
}

// hub holds the snapshot and the subscribers; both stores embed it.
type hub struct {
	snap atomic.Pointer[Evaluator]

	mu     sync.Mutex // guards subs, closed, wake
	subs   map[*Subscription]struct{}
	closed bool
	wake   chan struct{} // closed and replaced on every publish (for waitFor)
}

func newHub(initial *Evaluator) *hub {
	h := &hub{subs: make(map[*Subscription]struct{}), wake: make(chan struct{})}
	h.snap.Store(initial)
	return h
}

// Evaluator implements Source.
func (h *hub) Evaluator() *Evaluator { return h.snap.Load() }

// Subscribe implements Source.
func (h *hub) Subscribe() (*Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if len(h.subs) >= MaxSubscribers {
		return nil, ErrTooManySubscribers
	}
	c := make(chan struct{}, 1)
	s := &Subscription{C: c, c: c, hub: h}
	h.subs[s] = struct{}{}
	return s, nil
}

func (h *hub) remove(s *Subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.c)
	}
}

// publish replaces the snapshot and signals every subscriber without blocking.
func (h *hub) publish(e *Evaluator) {
	h.snap.Store(e)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	for s := range h.subs {
		select {
		case s.c <- struct{}{}:
		default: // a notification is already pending: coalesced
		}
	}
	close(h.wake)
	h.wake = make(chan struct{})
}

// wakeWaiters wakes every waitFor without changing the snapshot.
func (h *hub) wakeWaiters() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	close(h.wake)
	h.wake = make(chan struct{})
}

// waitFor blocks until cond() holds (checked after every publish or wakeWaiters), ctx
// is done, or the hub closes.
func (h *hub) waitFor(ctx context.Context, cond func() bool) error {
	for {
		h.mu.Lock()
		wake, closed := h.wake, h.closed
		h.mu.Unlock()
		if cond() {
			return nil
		}
		if closed {
			return ErrClosed
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// close closes every subscription; later Subscribe calls fail.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for s := range h.subs {
		delete(h.subs, s)
		close(s.c)
	}
	close(h.wake)
}

// watched is what the two shared stores (KVStore, PostgresStore) have besides the
// hub: a watch goroutine that Close stops and waits for, and the counters of KVStats.
type watched struct {
	invalid   atomic.Uint64 // stored records that failed to decode or validate (ignored)
	auditErrs atomic.Uint64 // audit appends that failed (the change itself was applied)
	resyncs   atomic.Uint64 // reloads of the stored flags after a reconnect

	closing   chan struct{} // closed by stop: the watch goroutine returns
	done      chan struct{} // closed by the watch goroutine when it exits
	closeOnce sync.Once
}

func newWatched() watched {
	return watched{closing: make(chan struct{}), done: make(chan struct{})}
}

func (w *watched) stats() KVStats {
	return KVStats{InvalidRecords: w.invalid.Load(), AuditErrors: w.auditErrs.Load(), Resyncs: w.resyncs.Load()}
}

func (w *watched) isClosed() bool {
	select {
	case <-w.closing:
		return true
	default:
		return false
	}
}

// stop (idempotent) closes closing, waits for the watch goroutine to exit, then runs
// release.
func (w *watched) stop(release func()) {
	w.closeOnce.Do(func() {
		close(w.closing)
		<-w.done
		release()
	})
}
