package stream

import (
	"sync"
	"sync/atomic"
	"time"
)

// The registry of waiting long-polls: bounded (per instance and per user), indexed
// by channel for dispatch, and emptied by each poll before it returns.

// pollWaiter is one waiting poll. wake has capacity 1 and is never closed: dispatch
// and flag changes signal it without blocking; the poll's goroutine removes the waiter
// from the registry before it returns.
type pollWaiter struct {
	channels []string
	user     string
	since    time.Time // when it started waiting (inspect.go)
	wake     chan struct{}
}

// longPoll is the registry of waiting polls and the streaming switch.
type longPoll struct {
	m *pollCounters

	allowed atomic.Pointer[func(userID string) bool] // nil: streaming allowed for everyone
	change  atomic.Pointer[flagChange]               // the last ApplyStreamingFlag

	mu        sync.Mutex
	byChannel map[string]map[*pollWaiter]struct{}
	all       map[*pollWaiter]struct{}
	perUser   map[string]int
	stopped   bool
	stopCh    chan struct{} // closed by stop: waiting polls answer 503; never reopened
	wg        sync.WaitGroup
	n         atomic.Int64 // len(all), read by dispatch without the lock
}

func newLongPoll(cfg *Config, m *pollCounters) *longPoll {
	lp := &longPoll{m: m, byChannel: map[string]map[*pollWaiter]struct{}{}, all: map[*pollWaiter]struct{}{},
		perUser: map[string]int{}, stopCh: make(chan struct{})}
	if cfg.StreamingAllowed != nil {
		f := cfg.StreamingAllowed
		lp.allowed.Store(&f)
	}
	return lp
}

// enter counts a running poll request; false once stopping.
func (lp *longPoll) enter() bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.stopped {
		return false
	}
	lp.wg.Add(1)
	return true
}

func (lp *longPoll) exit() { lp.wg.Done() }

// stop wakes every waiting poll (they answer 503) and refuses new ones. Idempotent.
func (lp *longPoll) stop() {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if !lp.stopped {
		lp.stopped = true
		close(lp.stopCh)
	}
}

// add registers a waiter; it fails when the instance or the user is at its limit.
func (lp *longPoll) add(w *pollWaiter, maxTotal, maxPerUser int) (refusal string) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if len(lp.all) >= maxTotal {
		return pollRefuseCapacity
	}
	if w.user != "" && lp.perUser[w.user] >= maxPerUser {
		return pollRefuseUserLimit
	}
	lp.all[w] = struct{}{}
	if w.user != "" {
		lp.perUser[w.user]++
	}
	for _, ch := range w.channels {
		set := lp.byChannel[ch]
		if set == nil {
			set = map[*pollWaiter]struct{}{}
			lp.byChannel[ch] = set
		}
		set[w] = struct{}{}
	}
	lp.n.Store(int64(len(lp.all)))
	return ""
}

func (lp *longPoll) remove(w *pollWaiter) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if _, ok := lp.all[w]; !ok {
		return
	}
	delete(lp.all, w)
	if w.user != "" {
		if lp.perUser[w.user] <= 1 {
			delete(lp.perUser, w.user)
		} else {
			lp.perUser[w.user]--
		}
	}
	for _, ch := range w.channels {
		if set := lp.byChannel[ch]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(lp.byChannel, ch)
			}
		}
	}
	lp.n.Store(int64(len(lp.all)))
}

// wakeChannel signals the waiters of channel. Called by dispatch after the event is in
// the window; never blocks (the lock is held only by map updates).
func (lp *longPoll) wakeChannel(channel string) {
	if lp.n.Load() == 0 {
		return
	}
	lp.mu.Lock()
	for w := range lp.byChannel[channel] {
		signal(w.wake)
	}
	lp.mu.Unlock()
}

// wakeAll signals every waiter (a transport change: they re-evaluate the flag).
func (lp *longPoll) wakeAll() {
	lp.mu.Lock()
	for w := range lp.all {
		signal(w.wake)
	}
	lp.mu.Unlock()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// len is the number of registered waiters (tests).
func (lp *longPoll) len() (waiters, channels, users int) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return len(lp.all), len(lp.byChannel), len(lp.perUser)
}
