package stream

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// flusher runs the connections' writers on a few worker goroutines instead of one
// goroutine per busy connection.
//
// With a goroutine per connection, every frame costs a wake-up and often a goroutine
// start, and when one channel is fanned out to thousands of clients thousands of
// writers become runnable together: every goroutine of the publish path (HTTP handler,
// NATS client and embedded server, the dispatcher) then waits behind all of them in the
// Go scheduler's run queue, hop after hop. Here a connection with something to write
// waits in a FIFO that the workers take from, and workers yield every 250 µs, so the
// publish path runs within a fraction of a millisecond.
//
// No socket can hold a worker: writers write without blocking (sock.tryWritev). A
// socket that takes only part of a write is parked: the parker (epoll, park_linux.go)
// hands it back to the FIFO when it is writable again, and where there is no parker the
// rest is written by the connection's slow path, a goroutine of its own. A connection
// waiting like that for longer than Config.WriteTimeout without the socket taking a
// byte is stalled: the stall checker resets it. The flusher also runs the readers'
// parker (readPark, reader.go), which holds the readers of connections whose clients
// send nothing: the same mechanism, for readability.
//
// The FIFO has two lanes. A connection whose peer does not keep up (its socket filled
// up: sock.slowPeer) waits in the slow lane, which a worker of its own runs, one entry
// at a time, yielding after each; the other workers take only from the fast lane.
// Thousands of sockets that stopped reading take a dozen frames each before their
// buffers fill, and a write to one of them now and then takes milliseconds in the
// kernel; in the slow lane those writes never hold a worker the connections that read
// wait for, nor take more than one processor from the publish path.
type flusher struct {
	target   int    // workers
	park     parker // the writers' parker (nil: no epoll here)
	readPark parker // the readers' parker (nil: no epoll here)
	now      func() time.Time

	mu      sync.Mutex
	fast    lane // peers that keep up: the workers'
	slow    lane // peers that do not (sock.slowPeer): one worker of its own
	stopped bool

	// waiting: connections parked or on their slow path, for the stall checker.
	waitMu  sync.Mutex
	waiting map[*Client]struct{} // bounded by the open connections

	start sync.Once
	wg    sync.WaitGroup
	done  chan struct{} // closed by stop: ends the stall checker

	// maxWait is the longest a connection waited in the FIFO since the batch governor
	// last looked (nanoseconds): how far behind the writers are.
	maxWait atomic.Int64
	parked  atomic.Int64 // connections waiting for their socket (gauge)
	stalls  atomic.Uint64
	// slowTurns counts entries taken from the slow lane.
	slowTurns atomic.Uint64
}

// lane is one of the flusher's FIFOs (under flusher.mu), and the condition its workers
// wait on: it gained an entry, or stop.
type lane struct {
	q    []flushEntry
	head int
	cond *sync.Cond
}

func (l *lane) empty() bool { return l.head == len(l.q) }

func (l *lane) pop() flushEntry {
	e := l.q[l.head]
	l.q[l.head] = flushEntry{}
	l.head++
	l.q, l.head = compactFIFO(l.q, l.head)
	return e
}

// wake wakes the workers for n entries pushed to the lane.
func (l *lane) wake(n int) {
	switch {
	case n == 1:
		l.cond.Signal()
	case n > 1:
		l.cond.Broadcast()
	}
}

// parker waits for parked connections' sockets to become ready: writable (the
// writers' parker, newParker) or readable (the readers', newReadParker).
type parker interface {
	arm(c *Client) error // one report when c's socket is ready; by the owner of c's registration
	disarm(c *Client)
	waiting() int // connections armed and not reported yet
	run(onReady func(*Client))
	stop()
	close()
}

// flushEntry is a scheduled connection; gen tells a current entry from a stale one.
type flushEntry struct {
	c   *Client
	gen uint64
	at  int64 // unix nanos when it became ready
}

func newFlusher(workers int) *flusher {
	if workers <= 0 {
		workers = defaultWriters()
	}
	f := &flusher{target: workers, now: time.Now, waiting: map[*Client]struct{}{}, done: make(chan struct{})}
	f.fast.cond, f.slow.cond = sync.NewCond(&f.mu), sync.NewCond(&f.mu)
	if p, err := newParker(); err == nil {
		f.park = p
	}
	if p, err := newReadParker(); err == nil {
		f.readPark = p
	}
	return f
}

// parkers are the flusher's parkers that exist here.
func (f *flusher) parkers() []parker {
	var ps []parker
	for _, p := range []parker{f.park, f.readPark} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return ps
}

func (f *flusher) startOnce(stallTick time.Duration, check func(now time.Time)) {
	f.start.Do(func() {
		f.mu.Lock()
		if f.stopped {
			f.mu.Unlock()
			return
		}
		f.wg.Add(f.target + 1)
		for range f.target {
			go f.work(&f.fast)
		}
		go f.work(&f.slow)

		f.mu.Unlock()
		for _, pk := range []struct {
			p       parker
			onReady func(*Client)
		}{{f.park, (*Client).writable}, {f.readPark, (*Client).readable}} {
			if pk.p != nil {
				f.wg.Add(1)
				go func() {
					defer f.wg.Done()
					pk.p.run(pk.onReady)
				}()
			}
		}
		f.wg.Add(1)
		go f.stallChecker(stallTick, check)
	})
}

// laneFor is the lane c's writer waits in: the slow one when its peer does not keep up.
func (f *flusher) laneFor(c *Client) *lane {
	if c.cc.slowPeer.Load() {
		return &f.slow
	}
	return &f.fast
}

// pushReady queues c (at generation gen) for a worker.
func (f *flusher) pushReady(c *Client, gen uint64) {
	c.e.startFlusher()
	now := time.Now().UnixNano()
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		c.dropWriter(gen) // no worker will run it
		return
	}
	l := f.laneFor(c)
	l.q = append(l.q, flushEntry{c: c, gen: gen, at: now})
	f.mu.Unlock()
	l.wake(1)
}

// pushReadyMany queues several connections under one lock (the fan-out).
func (f *flusher) pushReadyMany(es []flushEntry) {
	if len(es) == 0 {
		return
	}
	es[0].c.e.startFlusher()
	now := time.Now().UnixNano()
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		for _, e := range es {
			e.c.dropWriter(e.gen) // no worker will run them
		}
		return
	}
	var slow int
	for _, e := range es {
		e.at = now
		l := f.laneFor(e.c)
		l.q = append(l.q, e)
		if l == &f.slow {
			slow++
		}
	}
	f.mu.Unlock()
	f.fast.wake(len(es) - slow)
	f.slow.wake(slow)
}

// stop ends the goroutines once every connection is gone (Engine.Close).
func (f *flusher) stop() {
	f.mu.Lock()
	already := f.stopped
	f.stopped = true
	f.mu.Unlock()
	if already {
		return
	}
	f.fast.cond.Broadcast()
	f.slow.cond.Broadcast()
	close(f.done)
	for _, p := range f.parkers() {
		p.stop()
	}
	f.wg.Wait()
	for _, p := range f.parkers() {
		p.close()
	}
}

// work runs the entries of lane l until stop and l is empty.
func (f *flusher) work(l *lane) {
	defer f.wg.Done()
	slow := l == &f.slow
	lastYield := time.Now()
	for {
		f.mu.Lock()
		for l.empty() && !f.stopped {
			l.cond.Wait()
		}
		if l.empty() { // stopped, and the lane is empty
			f.mu.Unlock()
			return
		}
		e := f.popLocked(l)
		f.mu.Unlock()

		now := time.Now()
		// How far behind the writers are is what the peers that keep up wait: the
		// slow lane waits by design.
		if w := now.UnixNano() - e.at; !slow && w > f.maxWait.Load() {
			f.maxWait.Store(w) // racy max: a lost update only under-reports one period
		}
		e.c.runWriter(e.gen)
		// Let the publish path run between connections: after each slow-lane entry, and
		// at most every yieldEvery in the fast lane (a yield per connection would leave
		// the writers one turn each among every runnable goroutine of the process).
		if slow || now.Sub(lastYield) >= yieldEvery {
			runtime.Gosched()
			lastYield = time.Now()
		}
	}
}

// popLocked takes l's next entry (l is not empty).
func (f *flusher) popLocked(l *lane) flushEntry {
	if l == &f.slow {
		f.slowTurns.Add(1)
	}
	return l.pop()
}

// defaultWriters is the workers' count when Config.Writers is 0: one fewer than the
// processors, at least one. Writes never block, so a worker more than the processors
// buys nothing, and writers on every processor leave none to notice the network: the Go
// scheduler polls it when a processor runs out of goroutines (or every 10 ms from its
// monitor), so while all of them write, a publish request, or a client's frame, waits
// for the burst to end. Measured with realtime-bench closed on 2 cores (1 writer
// against the former 4): more published at every point that fell short (877 against
// 734 of 1,000/s at 1,000 x 1,000; 252 against 153 at 5,000 x 1,000), publish p99 19.5
// against 46 ms at 5,000 x 100, server CPU per delivered event 1.01 against 1.36 µs at
// 10,000 x 100.
func defaultWriters() int { return max(1, runtime.GOMAXPROCS(0)-1) }

// yieldEvery is how long a worker writes before it yields the processor.
const yieldEvery = 250 * time.Microsecond

// addWaiting and removeWaiting maintain the stall checker's list.
func (f *flusher) addWaiting(c *Client) {
	f.waitMu.Lock()
	if _, ok := f.waiting[c]; !ok {
		f.waiting[c] = struct{}{}
		f.parked.Add(1)
	}
	f.waitMu.Unlock()
}

func (f *flusher) removeWaiting(c *Client) {
	f.waitMu.Lock()
	if _, ok := f.waiting[c]; ok {
		delete(f.waiting, c)
		f.parked.Add(-1)
	}
	f.waitMu.Unlock()
}

// stallChecker runs check every tick until stop.
func (f *flusher) stallChecker(tick time.Duration, check func(now time.Time)) {
	defer f.wg.Done()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-f.done:
			return
		case now := <-t.C:
			check(now)
		}
	}
}

// waitingClients copies the stall checker's list.
func (f *flusher) waitingClients() []*Client {
	f.waitMu.Lock()
	defer f.waitMu.Unlock()
	out := make([]*Client, 0, len(f.waiting))
	for c := range f.waiting {
		out = append(out, c)
	}
	return out
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
