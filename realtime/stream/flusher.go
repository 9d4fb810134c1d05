package stream

import (
	"container/heap"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// flusher runs the connections' writers on a few worker goroutines instead of one
// goroutine per busy connection.
//
// With a goroutine per connection, every frame costs a timer, a wake-up and often a
// goroutine start, and when one channel is fanned out to thousands of clients their
// batch windows line up: thousands of writers become runnable together, and every
// goroutine of the publish path (HTTP handler, NATS client and embedded server, the
// dispatcher) waits behind all of them in the Go scheduler's run queue, hop after hop.
// Here a connection with something to write is either ready (in a FIFO the workers
// take from) or delayed until its batch window ends (in a heap that one timer
// goroutine drains into the FIFO). Workers yield every 250 µs, so the publish
// path runs within a fraction of a millisecond, not after thousands of writes.
//
// A worker blocked on one connection (a socket that does not drain, a replay reading
// the bus) must not stall the others: a monitor counts workers busy for longer than
// stuckAfter and starts replacements, the way the Go runtime hands a processor off
// from a thread blocked in a system call. Surplus workers exit once the blocked ones
// are back.
type flusher struct {
	target int       // workers to keep unblocked
	base   time.Time // due times are monotonic offsets from it (a wall clock step moves nothing)

	mu      sync.Mutex
	cond    *sync.Cond // ready gained an entry, or stop
	ready   []flushEntry
	rhead   int
	delayed delayHeap
	wake    chan struct{} // the timer goroutine: a new earliest due, or stop
	workers []*flushWorker
	stuck   int // workers busy past stuckAfter, as of the monitor's last look
	stopped bool

	start sync.Once
	wg    sync.WaitGroup
	spawn atomic.Uint64 // workers started beyond the target (tests, metrics)
}

// flushEntry is a scheduled connection; gen tells a current entry from a stale one.
type flushEntry struct {
	c   *Client
	gen uint64
	due time.Duration // since flusher.base (delayed entries)
}

type flushWorker struct {
	since atomic.Int64 // unix nanos when the current connection was taken; 0 when idle
	exit  bool         // guarded by flusher.mu
}

// stuckAfter: a worker on one connection for longer is counted as blocked.
const stuckAfter = 20 * time.Millisecond

func newFlusher(workers int) *flusher {
	if workers <= 0 {
		workers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	f := &flusher{target: workers, base: time.Now(), wake: make(chan struct{}, 1)}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *flusher) startOnce() {
	f.start.Do(func() {
		f.mu.Lock()
		if f.stopped {
			f.mu.Unlock()
			return
		}
		for range f.target {
			f.addWorkerLocked()
		}
		f.mu.Unlock()
		f.wg.Add(2)
		go f.timerLoop()
		go f.monitor()
	})
}

func (f *flusher) addWorkerLocked() {
	w := &flushWorker{}
	f.workers = append(f.workers, w)
	f.wg.Add(1)
	go f.work(w)
}

// pushReady queues c (at generation gen) for a worker.
func (f *flusher) pushReady(c *Client, gen uint64) {
	f.startOnce()
	f.mu.Lock()
	f.ready = append(f.ready, flushEntry{c: c, gen: gen})
	f.mu.Unlock()
	f.cond.Signal()
}

// pushDelayed queues c (at generation gen) for a worker at due.
func (f *flusher) pushDelayed(c *Client, gen uint64, due time.Time) {
	f.startOnce()
	d := due.Sub(f.base)
	f.mu.Lock()
	earliest := len(f.delayed) == 0 || d < f.delayed[0].due
	heap.Push(&f.delayed, flushEntry{c: c, gen: gen, due: d})
	f.mu.Unlock()
	if earliest {
		signal(f.wake)
	}
}

// stop ends the goroutines once every connection is gone (Engine.Close).
func (f *flusher) stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	f.cond.Broadcast()
	signal(f.wake)
	f.wg.Wait()
}

func (f *flusher) work(w *flushWorker) {
	defer f.wg.Done()
	lastYield := time.Now()
	for {
		f.mu.Lock()
		for f.rhead == len(f.ready) && !f.stopped && !w.exit {
			f.cond.Wait()
		}
		if w.exit || (f.stopped && f.rhead == len(f.ready)) {
			f.removeWorkerLocked(w)
			f.mu.Unlock()
			return
		}
		e := f.ready[f.rhead]
		f.ready[f.rhead] = flushEntry{}
		f.rhead++
		f.ready, f.rhead = compactFIFO(f.ready, f.rhead)
		f.mu.Unlock()

		now := time.Now()
		w.since.Store(now.UnixNano())
		e.c.runWriter(e.gen)
		w.since.Store(0)

		// Surplus after a blocked worker came back: leave.
		f.mu.Lock()
		if len(f.workers)-f.stuck > f.target && !f.stopped {
			w.exit = true
		}
		f.mu.Unlock()
		// Let the publish path run between connections, at most every yieldEvery: a
		// yield per connection would leave the writers one turn each among every
		// runnable goroutine of the process.
		if now.Sub(lastYield) >= yieldEvery {
			runtime.Gosched()
			lastYield = time.Now()
		}
	}
}

// yieldEvery is how long a worker writes before it yields the processor.
const yieldEvery = 250 * time.Microsecond

func (f *flusher) removeWorkerLocked(w *flushWorker) {
	for i, x := range f.workers {
		if x == w {
			f.workers = append(f.workers[:i], f.workers[i+1:]...)
			return
		}
	}
}

// timerLoop moves delayed connections to the ready FIFO when their window ends.
func (f *flusher) timerLoop() {
	defer f.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		f.mu.Lock()
		now := time.Since(f.base)
		moved := 0
		for len(f.delayed) > 0 && f.delayed[0].due <= now {
			e := heap.Pop(&f.delayed).(flushEntry)
			f.ready = append(f.ready, e)
			moved++
		}
		wait := time.Duration(-1)
		if len(f.delayed) > 0 {
			wait = f.delayed[0].due - now
		}
		stopped := f.stopped
		f.mu.Unlock()
		switch {
		case moved == 1:
			f.cond.Signal()
		case moved > 1:
			f.cond.Broadcast()
		}
		if stopped {
			return
		}
		if wait >= 0 {
			t.Reset(wait)
		}
		select {
		case <-t.C:
		case <-f.wake:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
	}
}

// monitor starts a replacement for every worker blocked on one connection.
func (f *flusher) monitor() {
	defer f.wg.Done()
	t := time.NewTicker(stuckAfter / 2)
	defer t.Stop()
	for {
		<-t.C
		f.mu.Lock()
		if f.stopped {
			f.mu.Unlock()
			return
		}
		limit := time.Now().Add(-stuckAfter).UnixNano()
		stuck := 0
		for _, w := range f.workers {
			if s := w.since.Load(); s != 0 && s < limit {
				stuck++
			}
		}
		f.stuck = stuck
		for len(f.workers)-stuck < f.target {
			f.addWorkerLocked()
			f.spawn.Add(1)
		}
		f.mu.Unlock()
	}
}

// compactFIFO returns a slice-backed FIFO (q, consumed up to head) rewound when it is
// empty, or moved to the front when more than half of it (and over 1024 slots) is
// consumed, so that it neither grows without bound nor copies on every pop.
func compactFIFO[T any](q []T, head int) ([]T, int) {
	switch {
	case head == len(q):
		return q[:0], 0
	case head > 1024 && head*2 > len(q):
		n := copy(q, q[head:])
		clear(q[n:])
		return q[:n], 0
	}
	return q, head
}

// delayHeap orders delayed entries by due time.
type delayHeap []flushEntry

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(flushEntry)) }
func (h *delayHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = flushEntry{}
	*h = old[:len(old)-1]
	return e
}
