package stream

// A connection's reader reads the client's frames (readLoop). While the client sends
// nothing, which is most of an idle connection's life, no goroutine waits for it: the
// reader parks with the readers' parker (epoll, park_linux.go, run by the flusher) and
// returns, and the parker starts it on a new goroutine when the socket is readable
// again, or its peer closed it. A parked connection then costs a map entry where a
// goroutine would hold a stack of 4 KiB or more (the library's frame reads grow it to
// 8 KiB, and the runtime does not shrink a waiting goroutine's stack under 4 KiB), and
// the garbage collector has one stack fewer to scan per idle connection.
//
// Only the reader parks itself, and only a CompareAndSwap out of readParked starts it
// again: the parker's report (readable), or wakeReader when the socket is closed
// (closing removes it from the parker's set, which would then never report it) or the
// read gets a deadline (a parked reader has no read to time out). A reader woken so is
// readAwake: it does not park again, and waits for the socket on its goroutine, as
// every reader does where there is no parker (no epoll, TLS, a test's pipe).

// Reader states (Client.readState).
const (
	readRunning int32 = iota // the reader runs (or waits) on a goroutine
	readParked               // the read parker holds it; no goroutine
	readAwake                // woken by wakeReader: it runs on a goroutine and never parks
)

// serveReads runs the connection's reader on the calling goroutine until it parks, or
// until the connection ends: it is then torn down here.
func (c *Client) serveReads() {
	why, parked := c.readLoop()
	if !parked {
		c.teardown(why)
	}
}

// parkReader leaves the wait for the client's next frame to the readers' parker and
// reports whether it did: the caller then returns at once, and the parker (readable)
// or wakeReader runs the reader again. False when it cannot (no parker, no raw socket,
// or the reader was woken): the caller waits on its goroutine. Reader only.
func (c *Client) parkReader() bool {
	fl := c.e.fl
	if fl.readPark == nil || c.cc.raw == nil || !c.readState.CompareAndSwap(readRunning, readParked) {
		return false
	}
	c.e.startFlusher() // the parker's goroutine
	if err := fl.readPark.arm(c); err != nil {
		// Not registered, so no report comes; wakeReader may have taken the reader meanwhile.
		return !c.readState.CompareAndSwap(readParked, readRunning)
	}
	return true
}

// readable is the readers' parker's report: the client sent something, closed, or the
// socket failed. The reader runs again on a new goroutine.
func (c *Client) readable() {
	if c.readState.CompareAndSwap(readParked, readRunning) {
		go c.serveReads()
	}
}

// wakeReader keeps the reader off the parker from now on and, if it is parked, runs it
// on a new goroutine: the socket was closed (its read then fails, and the reader tears
// the connection down) or its reads got a deadline. Any goroutine; may hold c.mu.
func (c *Client) wakeReader() {
	for {
		switch st := c.readState.Load(); st {
		case readParked:
			if c.readState.CompareAndSwap(st, readAwake) {
				c.e.fl.readPark.disarm(c)
				go c.serveReads()
				return
			}
		case readRunning:
			if c.readState.CompareAndSwap(st, readAwake) {
				return
			}
		default:
			return
		}
	}
}
