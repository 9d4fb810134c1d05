package stream

import (
	"context"
	"sync"
	"time"
)

// fanout turns dispatched events into frames and queues them to their subscribers, on
// one goroutine of its own, so that the bus delivery goroutine only records an event
// and hands it over.
//
// Each round takes the events dispatched since the last one (in bus order) and frames
// each channel's events once for every subscriber that gets events of only that
// channel in the round (and compresses them once, see frame.go), instead of once per
// connection. A connection that gets events of several channels in one round gets
// frames of its own, merged in seq order: every connection, whatever channels it holds,
// receives its events in strictly increasing seq order, which its single cursor relies
// on. Frames hold at most BatchMaxEvents events.
//
// Batching costs no latency when the instance has CPU to spare: the first event after
// a quiet spell is framed as soon as the fan-out goroutine runs, and only the events
// that arrive while it is busy with earlier ones (or together, in one bus delivery)
// share a frame. Under load the batch governor (window.go) sets a window: events are
// then framed at most once per window, so busy connections get fewer, larger frames;
// a full frame's worth of waiting events does not wait for the window.
//
// With a window open the connections take their events in fanPhases phases spread over
// the window (Client.phase), each phase once per window. With one take per window a
// hot channel readied all its connections at once, and the last of them waited for the
// writes of all the others: an event's latency was up to the window plus the whole
// burst (at 5,000 connections on two cores, about 50 + 40 ms). A phase's burst is a
// quarter of that, and the writes are spread over the window instead of queued behind
// each other.
type fanout struct {
	e *Engine

	mu      sync.Mutex
	pending []*outEvent // recorded and not yet framed for every phase, in seq order
	last    time.Time   // when events were last taken without a window
	// phases is 1 without a window, fanPhases with one; phase g's connections got
	// pending[:took[g]], and take the rest when due[g] comes (or whole frames early).
	phases int
	took   [fanPhases]int
	due    [fanPhases]time.Time

	wake    chan struct{}      // capacity 1, never closed
	flushes chan chan struct{} // flush requests (drain); never closed
	// emit frames and queues one round's events for the connections of one phase
	// (everyPhase: all of them); settle records that every event up to last is queued
	// for every phase. Fan-out goroutine; tests replace both.
	emit   func(evs []*outEvent, phase int)
	settle func(last *outEvent)
	jobs   []fanJob

	// owned by the fan-out goroutine
	round   uint64
	groups  []fanGroup
	byChan  map[string]int
	multi   []*Client
	subsBuf []sub // the round's subscriber lists, copied under the pool's lock
	ends    []int // where each group's list ends in subsBuf
}

// fanGroup is one channel's events of a round and its subscribers.
type fanGroup struct {
	channel string
	evs     []*outEvent
	subs    []sub
}

// fanSub is one channel of a connection that gets events of several in a round.
type fanSub struct {
	g     int
	after uint64
}

func newFanout(e *Engine) *fanout {
	f := &fanout{e: e, wake: make(chan struct{}, 1), flushes: make(chan chan struct{}), byChan: map[string]int{}, phases: 1}
	var push []flushEntry
	f.emit = func(evs []*outEvent, phase int) {
		push = f.fanOut(evs, phase, push[:0])
		e.fl.pushReadyMany(push)
		clear(push)
	}
	f.settle = e.advanceFanned // the events are queued (liveHead)
	return f
}

// fanPhases is how many phases share a window.
const fanPhases = 4

// everyPhase is the phase of a round for every connection (no window).
const everyPhase = -1

// fanJob is one round of take's: the events out[from:to] for the connections of one
// phase (or everyPhase).
type fanJob struct {
	from, to, phase int
}

// add hands a recorded event to the fan-out. It never blocks (bus delivery goroutine).
func (f *fanout) add(ev *outEvent) {
	f.mu.Lock()
	f.pending = append(f.pending, ev)
	f.mu.Unlock()
	signal(f.wake)
}

// run frames and queues events until stop is closed. Owner: Engine (Start to Close).
func (f *fanout) run(stop <-chan struct{}) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var evs []*outEvent
	var flushed chan struct{}
	for {
		window := f.e.batch.current()
		if flushed != nil {
			window = 0
		}
		var wait time.Duration
		var done *outEvent
		evs, f.jobs, done, wait = f.take(time.Now(), window, evs[:0], f.jobs[:0])
		for _, j := range f.jobs {
			f.emit(evs[j.from:j.to], j.phase)
		}
		if done != nil {
			f.settle(done)
		}
		clear(evs)
		if flushed != nil {
			close(flushed)
			flushed = nil
		}
		if wait > 0 {
			t.Reset(wait)
		}
		select {
		case <-stop:
			return
		case flushed = <-f.flushes:
		case <-f.wake:
		case <-t.C:
			wait = 0
		}
		if wait > 0 && !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
	}
}

// take appends to out the events due now, as jobs (one per phase that takes some):
// without a window (0), every pending one, for every connection; with one, each
// phase's events once its due time came (a window after its last take), and only whole
// frames' worth (multiples of BatchMaxEvents) before. done is the last event every
// phase has now taken (nil: none more); wait is when the next phase is due (0: none
// waits).
func (f *fanout) take(now time.Time, window time.Duration, out []*outEvent, jobs []fanJob) ([]*outEvent, []fanJob, *outEvent, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.pending)
	if n == 0 {
		return out, jobs, nil, 0
	}
	if window <= 0 { // every phase takes the rest now
		for g := range f.phases {
			if f.took[g] < n {
				phase := g
				if f.phases == 1 {
					phase = everyPhase
				}
				jobs = append(jobs, fanJob{from: len(out), to: len(out) + n - f.took[g], phase: phase})
				out = append(out, f.pending[f.took[g]:]...)
			}
		}
		f.phases, f.last, f.took = 1, now, [fanPhases]int{}
		done := f.pending[n-1]
		f.trimLocked(n)
		return out, jobs, done, 0
	}
	if f.phases == 1 { // the window opens: the phases' turns spread over it from the last take
		f.phases = fanPhases
		base := f.last
		if base.Before(now.Add(-window)) { // (or a window ago: no take for that long)
			base = now.Add(-window)
		}
		for g := range fanPhases {
			f.took[g], f.due[g] = 0, base.Add(window*time.Duration(g+1)/fanPhases)
		}
	}
	full := f.e.cfg.BatchMaxEvents
	var wait time.Duration
	for g := range f.phases {
		avail := n - f.took[g]
		if avail == 0 {
			continue
		}
		due := !f.due[g].After(now)
		k := avail
		if !due {
			k = avail / full * full
		}
		if k > 0 {
			jobs = append(jobs, fanJob{from: len(out), to: len(out) + k, phase: g})
			out = append(out, f.pending[f.took[g]:f.took[g]+k]...)
			f.took[g] += k
		}
		if due { // the next turn a window on, on the phase's grid even after a quiet spell
			f.due[g] = f.due[g].Add(window * (1 + now.Sub(f.due[g])/window))
		} else if w := f.due[g].Sub(now); f.took[g] < n && (wait == 0 || w < wait) {
			wait = w
		}
	}
	m := f.took[0]
	for g := 1; g < f.phases; g++ {
		m = min(m, f.took[g])
	}
	var done *outEvent
	if m > 0 {
		done = f.pending[m-1]
		f.trimLocked(m)
		for g := range f.phases {
			f.took[g] -= m
		}
	}
	return out, jobs, done, wait
}

// trimLocked drops the first m pending events (every phase has taken them; the caller
// moves took).
func (f *fanout) trimLocked(m int) {
	k := copy(f.pending, f.pending[m:])
	clear(f.pending[k:])
	f.pending = f.pending[:k]
	if cap(f.pending) > 4096 && k < cap(f.pending)/4 {
		f.pending = append([]*outEvent(nil), f.pending...) // shrink after a burst
	}
}

// flush queues every event dispatched so far to its subscribers, whatever the window,
// and returns once that is done (or ctx or stop ends first).
func (f *fanout) flush(ctx context.Context, stop <-chan struct{}) {
	done := make(chan struct{})
	select {
	case f.flushes <- done:
	case <-ctx.Done():
		return
	case <-stop:
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	case <-stop:
	}
}

// fanOut frames one round's events (in seq order) and queues them for the connections
// of one phase (or everyPhase); it returns the connections whose writers were idle, for
// the caller to hand to the flusher in one go. Fan-out goroutine only.
func (f *fanout) fanOut(evs []*outEvent, phase int, push []flushEntry) []flushEntry {
	e := f.e
	f.round++
	groups := f.groups[:0]
	clear(f.byChan)
	for _, ev := range evs {
		i, ok := f.byChan[ev.channel]
		if !ok {
			i = len(groups)
			f.byChan[ev.channel] = i
			groups = append(groups, fanGroup{channel: ev.channel})
		}
		groups[i].evs = append(groups[i].evs, ev)
	}
	// The subscribers, copied under the pool lock; then which connections get events of
	// more than one channel of this round.
	multi := f.multi[:0]
	buf := f.subsBuf[:0]
	ends := f.ends[:0]
	e.pool.mu.Lock()
	for i := range groups {
		if groups[i].evs[0].gen == e.pool.gen { // else: the stream was recreated, stale events
			buf = append(buf, e.pool.index[groups[i].channel]...)
		}
		ends = append(ends, len(buf))
	}
	e.pool.mu.Unlock()
	if phase != everyPhase { // the other phases' connections take these events on their turn
		w, from := 0, 0
		for i, end := range ends {
			for _, s := range buf[from:end] {
				if int(s.c.phase) == phase {
					buf[w] = s
					w++
				}
			}
			from, ends[i] = end, w
		}
		clear(buf[w:])
		buf = buf[:w]
	}
	f.ends = ends[:0]
	for i := range groups {
		g := &groups[i]
		start := 0
		if i > 0 {
			start = ends[i-1]
		}
		g.subs = buf[start:ends[i]:ends[i]]
		for _, s := range g.subs {
			c := s.c
			if c.fanRound != f.round {
				c.fanRound, c.fanSubs = f.round, c.fanSubs[:0]
			}
			c.fanSubs = append(c.fanSubs, fanSub{g: i, after: s.after})
			if len(c.fanSubs) == 2 {
				multi = append(multi, c)
			}
		}
	}

	max := e.cfg.BatchMaxEvents
	for i := range groups {
		g := &groups[i]
		for run := g.evs; len(run) > 0 && len(g.subs) > 0; {
			n := min(len(run), max)
			fr := newEventsFrame(run[:n:n], false)
			run = run[n:]
			for _, s := range g.subs {
				if len(s.c.fanSubs) > 1 {
					continue // merged below
				}
				if f := fr.filterFrom(s.after); f != nil {
					if ok, gen := s.c.offer(item{fr: f}); ok {
						push = append(push, flushEntry{c: s.c, gen: gen})
					}
				}
			}
		}
	}
	for _, c := range multi {
		evs := mergeRound(groups, c.fanSubs)
		for len(evs) > 0 {
			n := min(len(evs), max)
			if ok, gen := c.offer(item{fr: newEventsFrame(evs[:n:n], false)}); ok {
				push = append(push, flushEntry{c: c, gen: gen})
			}
			evs = evs[n:]
		}
	}
	for i := range groups {
		groups[i] = fanGroup{}
	}
	f.groups = groups[:0]
	clear(multi)
	f.multi = multi[:0]
	clear(buf)
	f.subsBuf = buf[:0]
	return push
}

// mergeRound merges, in seq order, the events of the round's groups in subs (each after
// its subscription's start) for one connection.
func mergeRound(groups []fanGroup, subs []fanSub) []*outEvent {
	var out []*outEvent
	idx := make([]int, len(subs))
	for k, s := range subs {
		evs := groups[s.g].evs
		for idx[k] < len(evs) && evs[idx[k]].seq <= s.after {
			idx[k]++
		}
	}
	for {
		best := -1
		for k, s := range subs {
			evs := groups[s.g].evs
			if idx[k] < len(evs) && (best < 0 || evs[idx[k]].seq < groups[subs[best].g].evs[idx[best]].seq) {
				best = k
			}
		}
		if best < 0 {
			return out
		}
		out = append(out, groups[subs[best].g].evs[idx[best]])
		idx[best]++
	}
}
