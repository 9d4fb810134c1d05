package stream

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"encore.app/realtime/protocol"
)

// outEvent is one bus event encoded once and shared by every connection that gets it.
type outEvent struct {
	seq     uint64
	channel string
	enc     []byte
	at      time.Time // dispatch time, for the enqueue-to-write histogram
}

// item is one queue entry: an event, a control frame, or a subscribe answer with its
// recovery.
type item struct {
	ev   *outEvent
	ctrl []byte
	job  *replayJob
}

func (it item) size() int {
	switch {
	case it.ev != nil:
		return len(it.ev.enc)
	case it.ctrl != nil:
		return len(it.ctrl)
	default:
		return 256
	}
}

// connState is the lifecycle of a Client, guarded by Client.mu.
type connState int

const (
	stateOpen    connState = iota
	stateClosing           // a close was requested; the writer sends it
	stateClosed            // the close was sent or the connection is gone
)

// Client is one stream connection. The HTTP handler goroutine that accepted it owns it:
// it runs the read loop, and on return tears the client down and waits for the writer.
type Client struct {
	// immutable after construction
	e       *Engine
	conn    *websocket.Conn
	cc      *countingConn // the socket under conn (set by Hijack during Accept)
	deflate bool          // permessage-deflate was negotiated
	session string
	ctx     context.Context // cancelled at teardown or engine close
	cancel  context.CancelFunc

	opened   time.Time                // when the connection was accepted; immutable
	lastRead atomic.Int64             // unix nanos of the last frame read
	welcomed atomic.Bool              // the welcome (and the URL's subscribe) is queued: pings may follow
	health   atomic.Pointer[healthAt] // the last health frame the client sent (inspect.go)
	id       atomic.Pointer[Identity] // replaced by a token refresh (auth frame)
	release  func()                   // Config.Admit's release; set before register, run at teardown

	// owned by the read loop: client message rate (security.go)
	msgLimit   *rate.Limiter
	msgRefused int

	// guarded by Engine.pool.mu
	subs map[string]struct{}

	// owned by the read loop
	badFrames int

	// guarded by mu
	mu          sync.Mutex
	q           []item
	qHead       int
	qEvents     int // event items queued
	qBytes      int
	qPeakBytes  int        // high-water mark of qBytes, for tests and debugging
	sched       schedState // where the writer is (flusher.go)
	gen         uint64     // generation of the current flusher entry
	state       connState
	closeCode   protocol.CloseCode
	closeReason string
	flushFirst  bool // on close, write what is queued first (drain) or drop it (slow, kicked)
	disc        DisconnectReason
	discSet     bool
	lastWrite   time.Time
	expiry      *time.Timer // closes the connection when the token expires (security.go)

	// owned by the flusher worker running the writer
	batch []*outEvent
	// liveAfter: the client resumed with a cursor ahead of this instance; live events
	// up to it are ones it already processed, and are not written again.
	liveAfter uint64

	wg sync.WaitGroup // one while the writer is scheduled or running
}

// schedState is where a connection's writer is.
type schedState uint8

const (
	schedNone    schedState = iota // nothing to write
	schedDelayed                   // waiting for its batch window to end (flusher heap)
	schedReady                     // in the flusher's FIFO
	schedRunning                   // a worker runs it
)

// UserID is the authenticated user of the connection ("" when anonymous).
func (c *Client) UserID() string { return c.id.Load().UserID }

// Identity is the connection's current identity (replaced when the token is refreshed).
func (c *Client) Identity() *Identity { return c.id.Load() }

// enqueue adds an item without blocking. On overflow the queue is dropped and the
// connection closed as a slow consumer.
func (c *Client) enqueue(it item) {
	m := c.e.metrics
	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		if it.ev != nil {
			m.drop(DropClosing, 1)
		}
		return
	}
	size := it.size()
	cfg := &c.e.cfg
	if len(c.q)-c.qHead+1 > cfg.QueueMaxEvents || c.qBytes+size > cfg.QueueMaxBytes {
		dropped := c.qEvents
		if it.ev != nil {
			dropped++
		}
		c.resetQueueLocked()
		m.drop(DropSlowConsumer, dropped)
		c.requestCloseLocked(protocol.CloseSlow, "slow consumer", c.e.retryHint(), DiscSlowConsumer, false)
		c.mu.Unlock()
		return
	}
	c.q = append(c.q, it)
	c.qBytes += size
	c.qPeakBytes = max(c.qPeakBytes, c.qBytes)
	if it.ev != nil {
		c.qEvents++
	}
	c.kickLocked()
	c.mu.Unlock()
}

// batchFullLocked reports whether the writer should stop waiting for the batch window:
// a full frame is queued, or the queue holds a quarter of its byte bound.
func (c *Client) batchFullLocked() bool {
	return c.qEvents >= c.e.cfg.BatchMaxEvents || c.qBytes >= c.e.cfg.QueueMaxBytes/4
}

func (c *Client) enqueueCtrl(b []byte) { c.enqueue(item{ctrl: b}) }

func (c *Client) resetQueueLocked() {
	c.q, c.qHead, c.qEvents, c.qBytes = nil, 0, 0, 0
}

// kickLocked schedules the writer after an enqueue or a close request: at once when
// the head of the queue can go now, at the end of the batch window otherwise. A writer
// waiting for its window is moved up when a full batch (or a close) is queued; a
// running writer finds the new item itself.
func (c *Client) kickLocked() {
	switch c.sched {
	case schedNone:
		c.wg.Add(1)
		c.scheduleLocked()
	case schedDelayed:
		if c.state != stateOpen || c.batchFullLocked() {
			c.readyLocked()
		}
	}
}

// scheduleLocked puts a writer with something queued in the flusher: delayed when the
// head is an event of an open connection inside its batch window, ready otherwise.
func (c *Client) scheduleLocked() {
	if due, wait := c.windowEndLocked(); wait {
		c.delayLocked(due)
		return
	}
	c.readyLocked()
}

// readyLocked queues the writer for a worker now; delayLocked at due. Each makes a new
// flusher entry and leaves any earlier one stale.
func (c *Client) readyLocked() {
	c.gen++
	c.sched = schedReady
	c.e.fl.pushReady(c, c.gen)
}

func (c *Client) delayLocked(due time.Time) {
	c.gen++
	c.sched = schedDelayed
	c.e.fl.pushDelayed(c, c.gen, due)
}

// windowEndLocked reports whether the head of the queue must wait for the end of the
// batch window, and when that is.
func (c *Client) windowEndLocked() (time.Time, bool) {
	if c.qHead == len(c.q) || c.q[c.qHead].ev == nil || c.state != stateOpen || c.batchFullLocked() {
		return time.Time{}, false
	}
	due := c.lastWrite.Add(c.e.batch.current())
	return due, time.Until(due) > 0
}

// requestClose asks the writer to close the connection with code. flush writes what
// is queued first. The first request wins; later ones are ignored.
func (c *Client) requestClose(code protocol.CloseCode, text string, retryMs int64, why DisconnectReason, flush bool) {
	c.mu.Lock()
	c.requestCloseLocked(code, text, retryMs, why, flush)
	c.mu.Unlock()
}

func (c *Client) requestCloseLocked(code protocol.CloseCode, text string, retryMs int64, why DisconnectReason, flush bool) {
	if c.state != stateOpen {
		return
	}
	c.state = stateClosing
	c.closeCode = code
	c.closeReason = protocol.CloseReason(text, retryMs)
	c.flushFirst = flush
	c.setDiscLocked(why)
	if !flush {
		if c.qEvents > 0 {
			c.e.metrics.drop(DropClosing, c.qEvents)
		}
		c.resetQueueLocked()
	}
	c.kickLocked()
}

func (c *Client) setDiscLocked(why DisconnectReason) {
	if !c.discSet {
		c.disc, c.discSet = why, true
	}
}

// runWriter runs on a flusher worker: it writes what is queued, batching events,
// until the queue is empty (the writer is done) or the next events must wait for the
// batch window (it is delayed again). It sends the close frame when a close was
// requested. gen is the flusher entry's generation: a stale entry does nothing.
func (c *Client) runWriter(gen uint64) {
	c.mu.Lock()
	if c.gen != gen || (c.sched != schedReady && c.sched != schedDelayed) {
		c.mu.Unlock()
		return
	}
	c.sched = schedRunning
	c.mu.Unlock()
	cfg := &c.e.cfg
	for {
		c.mu.Lock()
		if c.state == stateClosing && (!c.flushFirst || len(c.q) == c.qHead) {
			code, reason := c.closeCode, c.closeReason
			c.state = stateClosed
			c.resetQueueLocked()
			c.mu.Unlock()
			// The closing handshake waits for the client's answer: not on a worker.
			go func() {
				_ = c.conn.Close(websocket.StatusCode(code), reason)
				c.finishWriter()
			}()
			return
		}
		if c.state == stateClosed || len(c.q) == c.qHead {
			c.resetQueueLocked()
			c.mu.Unlock()
			c.finishWriter()
			return
		}
		if due, wait := c.windowEndLocked(); wait {
			c.delayLocked(due)
			c.mu.Unlock()
			return
		}
		head := c.q[c.qHead]
		c.batch = c.batch[:0]
		var one item
		if head.ev != nil {
			for c.qHead < len(c.q) && c.q[c.qHead].ev != nil && len(c.batch) < cfg.BatchMaxEvents {
				ev := c.q[c.qHead].ev
				if ev.seq > c.liveAfter {
					c.batch = append(c.batch, ev)
				} else {
					c.e.metrics.eventsAlreadySeen.Add(1)
				}
				c.q[c.qHead] = item{}
				c.qHead++
				c.qEvents--
				c.qBytes -= len(ev.enc)
			}
		} else {
			one = head
			c.q[c.qHead] = item{}
			c.qHead++
			c.qBytes -= one.size()
		}
		c.q, c.qHead = compactFIFO(c.q, c.qHead)
		c.mu.Unlock()

		var err error
		switch {
		case len(c.batch) > 0:
			err = c.writeEvents(c.batch, false)
		case one.ctrl != nil:
			err = c.writeFrame(one.ctrl)
		case one.job != nil:
			err = c.runJob(one.job)
		}
		if len(c.batch) > 0 {
			c.mu.Lock()
			c.lastWrite = time.Now() // only event frames open a batch window
			c.mu.Unlock()
		}
		if err != nil {
			c.writeFailed(err)
			return
		}
	}
}

// finishWriter marks the writer done. A later enqueue schedules it again.
func (c *Client) finishWriter() {
	c.batch = nil
	c.mu.Lock()
	c.sched = schedNone
	c.mu.Unlock()
	c.wg.Done()
}

func (c *Client) writeFailed(err error) {
	c.batch = nil
	c.mu.Lock()
	c.setDiscLocked(DiscWriteError)
	if c.qEvents > 0 {
		c.e.metrics.drop(DropClosing, c.qEvents)
	}
	c.state = stateClosed
	c.resetQueueLocked()
	c.sched = schedNone
	c.mu.Unlock()
	c.e.log.Debug("write failed", "session", c.session, "err", err)
	_ = c.conn.CloseNow()
	c.wg.Done()
}

// writeFrame writes one text message with the write timeout and counts it.
//
// The frame is gathered (countingConn.cork) and sent in one system call bounded by the
// write deadline: no context and timer per frame. A blocked write ends at the deadline
// or when teardown closes the socket.
func (c *Client) writeFrame(b []byte) error {
	if c.rawOK(len(b)) {
		bp := framePool.Get().(*[]byte)
		*bp = append(append((*bp)[:0], make([]byte, wsHeaderMax)...), b...)
		err := c.writeRaw(*bp, wsHeaderMax)
		putFrame(bp)
		return c.wrote(len(b), err)
	}
	return c.writeLibrary(b)
}

// writeLibrary writes b through the WebSocket library (which compresses it).
func (c *Client) writeLibrary(b []byte) error {
	c.cc.cork()
	err := c.conn.Write(context.Background(), websocket.MessageText, b)
	if uerr := c.cc.uncork(time.Now().Add(c.e.cfg.WriteTimeout)); err == nil {
		err = uerr
	}
	return c.wrote(len(b), err)
}

// wrote counts a frame of n payload bytes once its write succeeded.
func (c *Client) wrote(n int, err error) error {
	if err != nil {
		return err
	}
	m := c.e.metrics
	m.framesWritten.Add(1)
	m.bytesRaw.Add(uint64(n))
	return nil
}

func putFrame(bp *[]byte) {
	if cap(*bp) <= 1<<20 {
		framePool.Put(bp)
	}
}

// writeEvents writes evs as one events frame. The frame is built behind room for its
// header, so that a raw frame goes out without another copy.
func (c *Client) writeEvents(evs []*outEvent, replayed bool) error {
	bp := framePool.Get().(*[]byte)
	encs := encPool.Get().(*[][]byte)
	*encs = (*encs)[:0]
	for _, ev := range evs {
		*encs = append(*encs, ev.enc)
	}
	*bp = protocol.AppendEventsFrame(append((*bp)[:0], make([]byte, wsHeaderMax)...), *encs)
	var err error
	if n := len(*bp) - wsHeaderMax; c.rawOK(n) {
		err = c.wrote(n, c.writeRaw(*bp, wsHeaderMax))
	} else {
		err = c.writeLibrary((*bp)[wsHeaderMax:])
	}
	clear(*encs)
	encPool.Put(encs)
	putFrame(bp)
	if err != nil {
		return err
	}
	m := c.e.metrics
	m.eventFrames.Add(1)
	m.eventsDelivered.Add(uint64(len(evs)))
	if replayed {
		m.eventsReplayed.Add(uint64(len(evs)))
	} else {
		now := time.Now()
		for _, ev := range evs {
			m.writeLatency.Observe(now.Sub(ev.at).Seconds())
		}
	}
	return nil
}

var (
	framePool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
	encPool   = sync.Pool{New: func() any { s := make([][]byte, 0, 128); return &s }}
)
