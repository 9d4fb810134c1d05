package stream

import "sync"

// A connection's reader reads the client's frames (readLoop). While the client sends
// nothing, which is most of an idle connection's life, no goroutine waits for it: the
// reader parks with the engine's read parker (epoll, park_linux.go) and returns, and
// the parker starts it on a new goroutine when the socket is readable again, or its
// peer closed it. A parked connection then costs a map entry where a goroutine would
// hold a stack of 4 KiB or more (the library's frame reads grow it to 8 KiB, and the
// runtime does not shrink a waiting goroutine's stack under 4 KiB), and the garbage
// collector has one stack fewer to scan per idle connection.
//
// Only the reader parks itself, and only a CompareAndSwap from readParked to
// readRunning starts it again: the parker's report, or wakeReader when the socket is
// closed (closing removes it from the parker's set, which would then never report it)
// or the read gets a deadline (a parked reader has no read to time out). From then on
// it does not park: it waits for the socket on its goroutine, as it does where there is
// no parker (no epoll, TLS, a test's pipe).

// Reader states (Client.readState).
const (
	readRunning int32 = iota // the reader runs (or waits) on a goroutine
	readParked               // the read parker holds it; no goroutine
)

// readParker is the engine's read parker and its goroutine, started at the first park.
type readParker struct {
	p    parker // nil: every reader waits on its goroutine
	once sync.Once
	wg   sync.WaitGroup
}

func newReadParkerOrNil() *readParker {
	rp := &readParker{}
	if p, err := newReadParker(); err == nil {
		rp.p = p
	}
	return rp
}

// start runs the parker's goroutine once; it starts the readers it reports.
func (rp *readParker) start() {
	rp.once.Do(func() {
		rp.wg.Add(1)
		go func() {
			defer rp.wg.Done()
			rp.p.run(func(c *Client) {
				if c.readState.CompareAndSwap(readParked, readRunning) {
					go c.serveReads()
				}
			})
		}()
	})
}

// waiting is how many readers are parked.
func (rp *readParker) waiting() int {
	if rp.p == nil {
		return 0
	}
	return rp.p.waiting()
}

// stop ends the parker's goroutine (Engine.Close, once every connection is torn down:
// none is parked any more).
func (rp *readParker) stop() {
	if rp.p == nil {
		return
	}
	rp.once.Do(func() {}) // a parker never started is not started now
	rp.p.stop()
	rp.wg.Wait()
	rp.p.close()
}

// serveReads runs the connection's reader on the calling goroutine until it parks, or
// until the connection ends: it is then torn down here.
func (c *Client) serveReads() {
	why, parked := c.readLoop()
	if !parked {
		c.teardown(why)
	}
}

// parkReader leaves the wait for the client's next frame to the read parker and
// reports whether it did: the caller then returns at once, and the parker or
// wakeReader runs the reader again. False when it cannot (no parker, no raw socket, or
// the reader must not park any more): the caller waits on its goroutine. Reader only.
func (c *Client) parkReader() bool {
	rp := c.e.readers
	if rp.p == nil || c.cc.raw == nil || c.e.noParker || c.noReadPark.Load() {
		return false
	}
	c.readState.Store(readParked)
	// wakeReader may have set noReadPark before the Store, when its CompareAndSwap
	// could not take the reader: look again, and keep the reader if nobody took it.
	if c.noReadPark.Load() {
		return !c.readState.CompareAndSwap(readParked, readRunning)
	}
	rp.start()
	if err := rp.p.arm(c); err != nil {
		// Not registered, so no report comes; wakeReader may have taken the reader meanwhile.
		return !c.readState.CompareAndSwap(readParked, readRunning)
	}
	return true
}

// wakeReader keeps the reader off the parker from now on and, if it is parked, runs it
// on a new goroutine: the socket was closed (its read then fails, and the reader tears
// the connection down) or its reads got a deadline. Any goroutine; may hold c.mu.
func (c *Client) wakeReader() {
	c.noReadPark.Store(true)
	if c.readState.CompareAndSwap(readParked, readRunning) {
		c.e.readers.p.disarm(c)
		go c.serveReads()
	}
}
