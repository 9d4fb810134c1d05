package stream

import (
	"context"
	"net"
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
	gen     uint64    // pool generation (a stream recreation starts a new one)
}

// item is one queue entry: a frame (events or control, often shared with other
// connections), or a subscribe answer with its recovery.
type item struct {
	fr  *frame
	job *replayJob
}

// jobSize is what a queued replay job counts against the queue bounds.
const jobSize = 256

func (it item) size() int {
	if it.fr != nil {
		return it.fr.size()
	}
	return jobSize
}

func (it item) events() int {
	if it.fr != nil {
		return it.fr.nEvents()
	}
	return 0
}

// connState is the lifecycle of a Client, guarded by Client.mu.
type connState int

const (
	stateOpen    connState = iota
	stateClosing           // a close was requested; the writer sends it
	stateClosed            // no more frames: the close frame was queued, or the client is gone
)

// Client is one stream connection. The goroutine ServeStream starts for it owns it: it
// runs the read loop, and on return tears the client down and waits for the writer.
//
// The writer is not a goroutine: whoever the scheduling state (sched) names runs it.
// A flusher worker while it is ready or running; nobody while it is parked (the
// parker or the stall checker hands it on); the connection's job goroutine while a
// subscribe answer and its recovery are written; its slow-path goroutine while a write
// the socket did not take at once is finished there.
type Client struct {
	// immutable after construction
	e       *Engine
	conn    *websocket.Conn
	cc      *sock // the socket under conn
	deflate bool  // permessage-deflate was negotiated (without context takeover)
	session string

	opened      time.Time                // when the connection was accepted; immutable
	lastRead    atomic.Int64             // unix nanos of the last frame read
	welcomed    atomic.Bool              // the welcome (and the URL's subscribe) is queued: pings may follow
	movedToPoll atomic.Bool              // the streaming policy sent it to long-polling (moveToPoll)
	health      atomic.Pointer[healthAt] // the last health frame the client sent (inspect.go)
	id          atomic.Pointer[Identity] // replaced by a token refresh (auth frame)
	release     func()                   // Config.Admit's release; set before register, run at teardown
	unsent      atomic.Int64             // qBytes+outBytes, read by the budget's ranking without the lock

	// owned by the read loop: client message rate (security.go)
	msgLimit   *rate.Limiter
	msgRefused int

	// guarded by Engine.pool.mu
	subs []subEntry

	// owned by the read loop
	badFrames int
	failed    bool    // the connection was failed (1007): what follows is not read as frames
	rpoll     pollReg // registration with the engine's read parker

	// the reader (reader.go): it runs on a goroutine, is parked, or was woken for good
	readState atomic.Int32

	// guarded by mu
	mu          sync.Mutex
	q           []item
	qHead       int
	qEvents     int // events queued or being written
	qBytes      int // bytes queued (not yet taken by the writer), shared frames included
	outBytes    int // bytes taken by the writer, not yet on the socket
	qPeakBytes  int // high-water mark of qBytes+outBytes, for tests and debugging
	ctrl        [][]byte
	ctrlBytes   int        // the library's frames waiting for the writer (pongs, its close)
	sched       schedState // who runs the writer
	gen         uint64     // generation of the current flusher entry
	state       connState
	closeCode   protocol.CloseCode
	closeReason string
	flushFirst  bool      // on close, write what is queued first (drain) or drop it (slow, kicked)
	closeSent   bool      // the close frame is the last thing the writer has to write
	closeAt     time.Time // when the close was requested
	closeQuick  bool      // the close must be on the socket within closeGrace (budget)
	aborted     bool      // the socket was reset: nothing more is written
	closeSocket bool      // the library closed the socket: the writer closes it when done
	progressAt  time.Time // when the socket last took bytes while some were pending
	disc        DisconnectReason
	discSet     bool
	expiry      *time.Timer // closes the connection when the token expires (security.go)
	jobCancel   func()      // ends the running replay job's bus calls (abort)
	// liveAfter: the client resumed with a cursor ahead of this instance; live events
	// up to it are ones it already processed, and are not written again. Set by the job
	// goroutine, read by the writer.
	liveAfter uint64
	// taken is the highest seq handed to this connection (queued, or read from the
	// window): events up to it are never queued again. lagging: the connection fell
	// behind (its socket does not take what is queued, or its queue reached its bounds),
	// so events are no longer queued to it: its writer reads them from the replay window
	// from taken on, as fast as the socket takes them, and it is live again once it
	// reaches the head (refill).
	taken    uint64
	lagging  bool
	deferred int // events offered while lagging and not read from the window yet

	// phase: which of the fan-out's phases (fanPhases) this connection takes its events
	// in while a batch window is open; set at creation. Connections that compress are
	// all in phase 0: a frame is compressed once for the connections of one phase.
	phase uint8
	// owned by the fan-out goroutine (fanout.go): this connection's channels with
	// events in the current round
	fanRound uint64
	fanSubs  []fanSub

	// owned by the writer (see above)
	out   []outSeg // complete frames to write, in order; only out[0] may be partly written
	iov   [][]byte
	wpoll pollReg // registration with the writers' parker
	// slowSocket: the socket has not taken everything since the writer last parked.
	// Its frames are then not merged: copying the backlog of a socket that does not
	// drain would cost memory for nothing.
	slowSocket bool

	// idle is signalled (on mu) when the writer becomes unscheduled (sched ==
	// schedNone). Teardown waits on it. A WaitGroup cannot be used here: the
	// library's close answer, or a drain's close request, may schedule the writer
	// again while teardown waits, and a WaitGroup's Add from zero must not race
	// its Wait.
	idle sync.Cond
}

// pollReg is a connection's registration with one parker: its id there, and whether
// its socket is in the parker's set. Written by the parker under its lock, on behalf of
// the side that arms it (the writer for Client.wpoll, the reader for Client.rpoll).
type pollReg struct {
	id    uint32
	added bool
}

// outSeg is one frame taken by the writer.
type outSeg struct {
	b      []byte // what is left to write
	fr     *frame // what is written; nil for the library's frames and the close frame
	held   *frame // the frame this segment holds (hold/release), often fr
	items  int    // queue entries it accounts for (itemCost each in the budget)
	size   int    // what it counts in outBytes (0: not counted)
	events int    // events it counts in qEvents
	wrote  int    // events it delivers (fewer than events when some were already seen)
	full   int    // len(b) before any of it was written
}

// itemCost is what one queue entry costs in the queue budget beyond the frame it holds
// (its slot in the queue, and later in the writer's list).
const itemCost = 32

// schedState is who runs a connection's writer.
type schedState uint8

const (
	schedNone    schedState = iota // nothing to write
	schedReady                     // in the flusher's FIFO
	schedRunning                   // a worker runs it
	schedParked                    // waiting for the socket to be writable (the parker)
	schedSlow                      // its slow-path goroutine finishes a write
	schedJob                       // its job goroutine writes a subscribe answer and recovery
)

// Writer limits: the bytes and frames one writev gathers, and the bytes one worker
// turn writes before the connection goes to the back of the FIFO.
const (
	gatherBytes    = 256 << 10
	gatherSegments = 64
	turnBytes      = 512 << 10
	// mergeBytes bounds a frame merged by the writer: merging pays for small frames
	// (the envelope and the client's per-message work), and a connection whose socket
	// stalls right after keeps at most this much of its own.
	mergeBytes = 8 << 10
	mergeSmall = 1 << 10 // only frames under this are merged: the envelope matters for them
	// lagItems and lagBytes: a connection whose writer waits for its socket with this
	// much queued falls back to the replay window (Client.lagging).
	lagItems = 64
	lagBytes = 256 << 10
	// refillEvents and refillScan bound one read of the window (under the pool's lock).
	refillEvents = 400
	refillScan   = 4096
	// maxCtrlBytes bounds the library's frames waiting for one connection (pongs to a
	// client that pings without reading): past it, the connection is reset.
	maxCtrlBytes = 16 << 10
	// closeGrace bounds a close: the client's answer to our close frame (its close,
	// then the end of the connection), what is left to write once the client is gone,
	// and the close frame of a connection closed for the queue budget (which frees the
	// kernel's buffers of sockets that do not drain sooner than WriteTimeout would).
	closeGrace = 2 * time.Second
)

// UserID is the authenticated user of the connection ("" when anonymous).
func (c *Client) UserID() string { return c.id.Load().UserID }

// Identity is the connection's current identity (replaced when the token is refreshed).
func (c *Client) Identity() *Identity { return c.id.Load() }

// enqueue adds an item without blocking and schedules the writer.
func (c *Client) enqueue(it item) {
	if push, gen := c.offer(it); push {
		c.e.fl.pushReady(c, gen)
	}
}

func (c *Client) enqueueCtrl(b []byte) { c.enqueue(item{fr: newTextFrame(b)}) }

// offer adds an item without blocking and reports whether the writer was idle (push):
// the caller then hands c to the flusher at generation gen. An events frame reaching a
// connection that fell behind (its writer parked on a full socket with lagItems or
// lagBytes queued, or its queue at its bounds) is not queued: the connection reads its
// events from the replay window instead (refill), so a socket that stops reading costs
// a bounded queue, not one entry per event.
func (c *Client) offer(it item) (push bool, gen uint64) {
	m := c.e.metrics
	n := it.events()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		m.drop(DropClosing, n)
		return false, 0
	}
	if fr := it.fr; fr != nil && fr.events != nil {
		if fr.first <= c.taken { // already read from the window
			if it.fr = fr.filterFrom(c.taken); it.fr == nil {
				return false, 0
			}
			n = it.fr.nEvents()
		}
		if c.lagging {
			c.deferred += n // its writer reads these from the window
			if c.taken < c.e.pool.floorNow.Load() {
				// What it has not read left the window: it resumes by cursor instead.
				m.drop(DropSlowConsumer, c.deferred)
				c.deferred = 0
				c.requestCloseLocked(protocol.CloseSlow, "slow consumer", c.e.retryHint(), DiscSlowConsumer, false, DropSlowConsumer)
				return c.kickLocked()
			}
			return false, 0
		}
	}
	size := it.size()
	cfg := &c.e.cfg
	if it.fr != nil && it.fr.events != nil {
		queued := len(c.q) - c.qHead
		waiting := c.sched == schedParked || c.sched == schedSlow
		if (waiting && (queued >= lagItems || c.qBytes >= lagBytes)) ||
			c.qEvents+n > cfg.QueueMaxEvents || c.qBytes+c.outBytes+size > cfg.QueueMaxBytes {
			c.lagging, c.deferred = true, n
			m.lagFallbacks.Add(1)
			return false, 0
		}
		c.taken = it.fr.last
	}
	c.q = append(c.q, it)
	c.qBytes += size
	c.qEvents += n
	c.qPeakBytes = max(c.qPeakBytes, c.qBytes+c.outBytes)
	c.unsent.Add(int64(size))
	if it.fr != nil {
		it.fr.hold(c.e.budget)
		c.e.budget.add(itemCost)
	} else {
		c.e.budget.add(jobSize)
	}
	return c.kickLocked()
}

// kickLocked schedules an idle writer: it reports whether the caller must push c to
// the flusher, at generation gen. A scheduled writer finds new work itself.
func (c *Client) kickLocked() (push bool, gen uint64) {
	if c.sched != schedNone {
		return false, 0
	}
	c.gen++
	c.sched = schedReady
	return true, c.gen
}

// readyLocked hands a writer that is not on a worker (parked, slow path, job) back to
// the flusher.
func (c *Client) readyLocked() uint64 {
	c.gen++
	c.sched = schedReady
	return c.gen
}

// finishLocked marks the writer done; a later enqueue schedules it again. A socket
// close the library asked for while the writer was busy is done now.
func (c *Client) finishLocked() {
	if c.sched == schedNone {
		return
	}
	c.sched = schedNone
	if c.closeSocket {
		c.closeSocket = false
		_ = c.cc.closeConn()
	}
	c.idle.Broadcast()
}

// dropWriter ends a writer scheduled at gen that no worker will run (the flusher has
// stopped: the engine is closed): what it holds is dropped, and teardown's wait ends.
func (c *Client) dropWriter(gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen || c.sched != schedReady {
		return
	}
	c.releaseOutLocked()
	c.resetQueueLocked(DropClosing)
	c.finishLocked()
}

// waitWriterIdle waits until the writer is not scheduled. After d it calls
// onTimeout (which must make the writer finish: c.abort) and goes on waiting.
func (c *Client) waitWriterIdle(d time.Duration, onTimeout func()) {
	fired := make(chan struct{})
	t := time.AfterFunc(d, func() { onTimeout(); close(fired) })
	c.mu.Lock()
	for c.sched != schedNone {
		c.idle.Wait()
	}
	c.mu.Unlock()
	if !t.Stop() {
		<-fired // onTimeout has run when this returns, as the caller expects
	}
}

// deferSocketClose reports whether the writer will close the socket (it is writing);
// false: close it now.
func (c *Client) deferSocketClose() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted || c.sched == schedNone {
		return false
	}
	c.closeSocket = true
	return true
}

// resetQueueLocked drops what is queued (not what the writer took), counting dropped
// events under why.
func (c *Client) resetQueueLocked(why DropReason) {
	n := 0
	b := c.e.budget
	for _, it := range c.q[c.qHead:] {
		n += it.events()
		if it.fr != nil {
			it.fr.release(b)
			b.sub(itemCost)
		} else {
			b.sub(jobSize)
		}
	}
	if n > 0 {
		c.e.metrics.drop(why, n)
	}
	c.qEvents -= n
	c.unsent.Add(-int64(c.qBytes))
	c.q, c.qHead, c.qBytes = nil, 0, 0
}

// releaseSeg takes s's hold and entries out of the budget.
func (c *Client) releaseSeg(s *outSeg) {
	if s.held != nil {
		s.held.release(c.e.budget)
		s.held = nil
	}
	c.e.budget.sub(itemCost * s.items)
	s.items = 0
}

// trimOutLocked drops the segments of out that were not started (all but a partly
// written first one): a connection closed without flushing sends its close frame right
// after the frame it is in the middle of. Only the writer's owner (or whoever holds a
// parked writer) calls it.
func (c *Client) trimOutLocked() {
	keep := 0
	if len(c.out) > 0 && len(c.out[0].b) < c.out[0].full {
		keep = 1
	}
	n, bytes := 0, 0
	for i := keep; i < len(c.out); i++ {
		s := &c.out[i]
		if s.fr == nil && s.size == 0 {
			continue // the library's frames stay
		}
		n += s.events
		bytes += s.size
		c.releaseSeg(s)
		s.b, s.fr, s.size, s.events = nil, nil, 0, 0
	}
	if n > 0 {
		c.e.metrics.drop(DropClosing, n)
	}
	c.qEvents -= n
	c.outBytes -= bytes
	c.unsent.Add(-int64(bytes))
}

// releaseOutLocked drops what the writer took and did not write. Only the writer's
// owner (or whoever holds a parked writer) calls it.
func (c *Client) releaseOutLocked() {
	n := 0
	for _, s := range c.out {
		n += s.events
	}
	if n > 0 {
		c.e.metrics.drop(DropClosing, n)
	}
	c.qEvents -= n
	for i := range c.out {
		c.releaseSeg(&c.out[i])
	}
	c.unsent.Add(-int64(c.outBytes))
	c.outBytes = 0
	clear(c.out)
	c.out = c.out[:0]
	c.ctrl, c.ctrlBytes = nil, 0
}

// closing reports whether a close was requested (or the connection is closed).
func (c *Client) closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state != stateOpen
}

// requestClose asks the writer to close the connection with code. flush writes what
// is queued first. The first request wins; later ones are ignored.
func (c *Client) requestClose(code protocol.CloseCode, text string, retryMs int64, why DisconnectReason, flush bool) {
	c.mu.Lock()
	if !c.requestCloseLocked(code, text, retryMs, why, flush, DropClosing) {
		c.mu.Unlock() // closing or closed already: the writer was kicked then
		return
	}
	push, gen := c.kickLocked()
	c.mu.Unlock()
	if push {
		c.e.fl.pushReady(c, gen)
	}
}

// requestCloseLocked records a close request and reports whether it did (false when
// the connection is closing or closed already); the caller kicks the writer. Without
// flush the queue is dropped at once, its events counted under dropAs.
func (c *Client) requestCloseLocked(code protocol.CloseCode, text string, retryMs int64, why DisconnectReason, flush bool, dropAs DropReason) bool {
	if c.state != stateOpen {
		return false
	}
	c.state = stateClosing
	c.closeCode = code
	c.closeReason = protocol.CloseReason(text, retryMs)
	c.flushFirst = flush
	c.closeAt = time.Now()
	c.setDiscLocked(why)
	if !flush {
		c.resetQueueLocked(dropAs)
		if c.sched == schedParked {
			c.trimOutLocked() // nobody else holds a parked writer
		}
	}
	return true
}

func (c *Client) setDiscLocked(why DisconnectReason) {
	if !c.discSet {
		c.disc, c.discSet = why, true
	}
}

// libraryWrite takes one write of the WebSocket library after attach (a pong, its
// close frame; always whole frames, see sock) and queues it for the writer.
func (c *Client) libraryWrite(p []byte) (int, error) {
	c.mu.Lock()
	if c.aborted {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	if c.closeSent {
		c.mu.Unlock()
		return len(p), nil // nothing may follow our close frame
	}
	if c.ctrlBytes+len(p) > maxCtrlBytes {
		// Reset the socket itself: this runs inside the library (its read loop
		// answering pings), which its Close would wait for. The read loop then fails
		// and the owner tears the connection down.
		c.setDiscLocked(DiscWriteError)
		c.aborted = true
		c.state = stateClosed
		c.resetQueueLocked(DropClosing)
		c.mu.Unlock()
		c.cc.resetOnClose()
		_ = c.cc.closeConn()
		return 0, net.ErrClosed
	}
	if len(p) > 0 && p[0]&0x0f == 0x8 {
		// The library's close frame (an answer to the client's, or its own for a
		// protocol error): nothing may follow it.
		if c.state != stateClosed {
			c.state = stateClosed
			c.resetQueueLocked(DropClosing)
		}
		if c.closeAt.IsZero() {
			c.closeAt = time.Now()
		}
		c.closeSent = true
	}
	c.ctrl = append(c.ctrl, append([]byte(nil), p...))
	c.ctrlBytes += len(p)
	push, gen := c.kickLocked()
	c.mu.Unlock()
	if push {
		c.e.fl.pushReady(c, gen)
	}
	return len(p), nil
}

// writerStep is what fill decided.
type writerStep int

const (
	stepWrite  writerStep = iota // out has bytes to write
	stepDone                     // nothing left: the writer was marked done
	stepJob                      // a replay job is next: hand it to the job goroutine
	stepSeal                     // the close frame is out: end the write side
	stepRefill                   // a lagging connection's queue is empty: read the window
)

// fill moves work into out, under the lock: the library's frames, the close frame when
// a close is due, and queued frames up to the gather limits. Frames are converted to
// bytes by the caller, outside the lock (compression may run).
func (c *Client) fill(take *[]item) (writerStep, *replayJob) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted {
		c.releaseOutLocked()
		c.resetQueueLocked(DropClosing)
		c.finishLocked()
		return stepDone, nil
	}
	for _, b := range c.ctrl {
		c.out = append(c.out, outSeg{b: b, full: len(b)})
	}
	c.ctrl, c.ctrlBytes = c.ctrl[:0], 0
	if c.state == stateClosing && (!c.flushFirst || c.qHead == len(c.q)) {
		c.resetQueueLocked(DropClosing)
		if !c.flushFirst {
			c.trimOutLocked()
		}
		cf := closeFrame(c.closeCode, c.closeReason)
		c.out = append(c.out, outSeg{b: cf, full: len(cf)})
		c.state, c.closeSent = stateClosed, true
	}
	held := false // a ping waits for the window's events up to its position
	if c.state != stateClosed {
		outBytes := 0
		for _, s := range c.out {
			outBytes += len(s.b)
		}
		for c.qHead < len(c.q) && len(c.out)+len(*take) < gatherSegments && outBytes < gatherBytes {
			it := c.q[c.qHead]
			if it.fr != nil && c.lagging && it.fr.upTo > c.taken {
				// A ping whose position is ahead of what this lagging connection read
				// from the window: the events up to it go first (liveHead). While
				// closing they never will: the ping is dropped, not written.
				if c.state == stateOpen {
					held = true
					break
				}
				c.q[c.qHead] = item{}
				c.qHead++
				size := it.fr.size()
				c.qBytes -= size
				c.unsent.Add(-int64(size))
				it.fr.release(c.e.budget)
				c.e.budget.sub(itemCost)
				continue
			}
			if it.job != nil {
				if len(c.out) > 0 || len(*take) > 0 {
					break // write what is before it first
				}
				c.q[c.qHead] = item{}
				c.qHead++
				c.qBytes -= jobSize
				c.unsent.Add(-jobSize)
				c.e.budget.sub(jobSize)
				c.q, c.qHead = compactFIFO(c.q, c.qHead)
				c.sched = schedJob
				return stepJob, it.job
			}
			c.q[c.qHead] = item{}
			c.qHead++
			size := it.fr.size()
			c.qBytes -= size
			c.outBytes += size
			outBytes += size
			*take = append(*take, it)
		}
		c.q, c.qHead = compactFIFO(c.q, c.qHead)
	}
	if c.state == stateOpen && c.lagging && (c.qHead == len(c.q) || held) && len(*take) == 0 && len(c.out) < gatherSegments/2 {
		return stepRefill, nil
	}
	if len(c.out) == 0 && len(*take) == 0 {
		if c.closeSent {
			return stepSeal, nil
		}
		if cap(c.out) > 4 { // an idle connection keeps little scratch
			c.out, c.iov = nil, nil
		}
		c.finishLocked()
		return stepDone, nil
	}
	if c.progressAt.IsZero() {
		c.progressAt = time.Now()
	}
	return stepWrite, nil
}

// appendTaken converts the frames fill took into out segments: the deflated form for a
// compressing client (built once per frame for every client), the events this
// connection has not seen yet. Events frames that queued up while the connection waited
// for a writer, if small (mergeSmall), are merged into frames of up to BatchMaxEvents
// events and mergeBytes for a client that does not compress and whose socket keeps up (one that compresses keeps the shared
// compressed frames: merging would mean compressing for it alone).
func (c *Client) appendTaken(take []item) {
	cfg := &c.e.cfg
	b := c.e.budget
	for i := 0; i < len(take); {
		orig := take[i].fr
		fr := orig
		seg := outSeg{held: orig, items: 1, size: orig.size(), events: orig.nEvents()}
		i++
		if fr.events != nil && !c.deflate && !c.slowSocket && !fr.replayed && len(fr.payload()) < mergeSmall {
			// Merge the small events frames that follow.
			var evs []*outEvent
			merged := len(fr.payload())
			for i < len(take) && take[i].fr.events != nil && !take[i].fr.replayed && len(take[i].fr.payload()) < mergeSmall &&
				max(len(evs), fr.nEvents())+take[i].fr.nEvents() <= cfg.BatchMaxEvents &&
				merged+len(take[i].fr.payload()) <= mergeBytes {
				nf := take[i].fr
				merged += len(nf.payload())
				if evs == nil {
					evs = append(evs, fr.events...)
				}
				evs = append(evs, nf.events...)
				seg.size += nf.size()
				seg.events += nf.nEvents()
				seg.items++
				nf.release(b)
				i++
			}
			if evs != nil {
				fr = newEventsFrame(evs, false)
				fr.at = orig.at // its oldest event is the first frame's
				fr.hold(b)
				orig.release(b)
				seg.held = fr
			}
		}
		seg.wrote = fr.nEvents()
		if fr.events != nil && c.liveAfter >= fr.first {
			nf := fr.filterFrom(c.liveAfter)
			c.e.metrics.eventsAlreadySeen.Add(uint64(fr.nEvents() - nf.nEvents()))
			if nf != nil {
				nf.hold(b)
			}
			seg.held.release(b)
			seg.held, seg.wrote, fr = nf, nf.nEvents(), nf
		}
		seg.fr = fr
		if fr != nil {
			seg.b = fr.wireFor(c.deflate, cfg.CompressionThreshold, &c.e.metrics.framesCompressed)
		}
		seg.full = len(seg.b)
		c.out = append(c.out, seg)
	}
}

// refill reads a lagging connection's next events from the replay window into take: in
// seq order, of its channels only, after each channel's start and liveAfter, bounded
// by refillEvents, gatherBytes and refillScan; it ends the lag once it reaches the
// head. A connection whose next events left the window before it read them is closed
// as a slow consumer (4100): it resumes by cursor, from the bus.
func (c *Client) refill(take *[]item) {
	e := c.e
	p := e.pool
	p.mu.Lock()
	c.mu.Lock()
	if c.state != stateOpen || !c.lagging {
		c.mu.Unlock()
		p.mu.Unlock()
		return
	}
	if c.taken < p.floor {
		e.metrics.drop(DropSlowConsumer, c.deferred)
		c.deferred = 0
		c.requestCloseLocked(protocol.CloseSlow, "slow consumer", e.retryHint(), DiscSlowConsumer, false, DropSlowConsumer)
		c.mu.Unlock()
		p.mu.Unlock()
		return
	}
	keep := func(ev *outEvent) bool {
		i := c.subAt(ev.channel)
		return i >= 0 && ev.seq > c.subs[i].after && ev.seq > c.liveAfter
	}
	if len(c.subs) > 8 {
		after := make(map[string]uint64, len(c.subs))
		for _, s := range c.subs {
			after[s.ch] = s.after
		}
		keep = func(ev *outEvent) bool {
			a, ok := after[ev.channel]
			return ok && ev.seq > a && ev.seq > c.liveAfter
		}
	}
	evs, upTo, done := p.window.sinceLimited(c.taken, keep, refillEvents, gatherBytes, refillScan)
	c.taken = max(c.taken, upTo)
	if done {
		c.taken = max(c.taken, p.head)
		c.lagging = false
	}
	c.deferred = max(0, c.deferred-len(evs))
	if !c.lagging {
		c.deferred = 0
	}
	for len(evs) > 0 {
		n := min(len(evs), e.cfg.BatchMaxEvents)
		fr := newEventsFrame(evs[:n:n], false)
		evs = evs[n:]
		fr.hold(e.budget)
		e.budget.add(itemCost)
		size := fr.size()
		c.outBytes += size
		c.qEvents += n
		c.unsent.Add(int64(size))
		*take = append(*take, item{fr: fr})
	}
	c.mu.Unlock()
	p.mu.Unlock()
	e.metrics.windowFrames.Add(uint64(len(*take)))
}

// runWriter runs on a flusher worker: it writes what is queued without ever waiting
// for the socket, until nothing is left (done), the socket takes no more (parked), or
// the turn is used up (back to the FIFO). gen is the flusher entry's generation: a
// stale entry does nothing.
func (c *Client) runWriter(gen uint64) {
	c.mu.Lock()
	if c.gen != gen || c.sched != schedReady {
		c.mu.Unlock()
		return
	}
	c.sched = schedRunning
	c.mu.Unlock()
	var take []item
	turn := 0
	for {
		take = take[:0]
		step, job := c.fill(&take)
		switch step {
		case stepDone:
			return
		case stepJob:
			go c.runJobGoroutine(job)
			return
		case stepSeal:
			c.seal()
			return
		case stepRefill:
			c.refill(&take)
		}
		c.appendTaken(take)
		clear(take)
		n, err := c.cc.tryWritev(c.iovecs())
		c.wrote(n)
		turn += n
		switch {
		case err == errWouldBlock || err == errNoNonBlocking:
			c.cc.filled()
			c.park()
			return
		case err != nil:
			c.writeFailed(err)
			return
		}
		c.cc.lookBehind(n)
		if turn >= turnBytes {
			c.mu.Lock()
			gen := c.readyLocked()
			c.mu.Unlock()
			c.e.fl.pushReady(c, gen) // the rest after the others
			return
		}
	}
}

// iovecs is out as write buffers.
func (c *Client) iovecs() [][]byte {
	c.iov = c.iov[:0]
	for _, s := range c.out {
		if len(s.b) > 0 {
			c.iov = append(c.iov, s.b)
		}
	}
	return c.iov
}

// wrote accounts n bytes the socket took from the front of out: frames written whole
// are counted and leave out.
func (c *Client) wrote(n int) {
	if n <= 0 && (len(c.out) == 0 || len(c.out[0].b) > 0) {
		return
	}
	m := c.e.metrics
	progress := n > 0
	done, doneBytes, doneEvents := 0, 0, 0
	now := time.Now()
	for done < len(c.out) {
		s := &c.out[done]
		if n < len(s.b) {
			s.b = s.b[n:]
			break
		}
		n -= len(s.b)
		s.b = nil
		done++
		doneBytes += s.size
		doneEvents += s.events
		if s.fr == nil {
			continue
		}
		m.framesWritten.Add(1)
		m.bytesRaw.Add(uint64(len(s.fr.payload())))
		if s.fr.events != nil && s.wrote > 0 {
			m.eventFrames.Add(1)
			m.eventsDelivered.Add(uint64(s.wrote))
			m.writeLatency.Observe(now.Sub(s.fr.at).Seconds())
		}
	}
	c.mu.Lock()
	if progress || done > 0 {
		c.progressAt = now
	}
	if done > 0 {
		c.outBytes -= doneBytes
		c.qEvents -= doneEvents
		c.unsent.Add(-int64(doneBytes))
		for i := range c.out[:done] {
			c.releaseSeg(&c.out[i])
		}
		k := copy(c.out, c.out[done:])
		clear(c.out[k:])
		c.out = c.out[:k]
	}
	if len(c.out) == 0 {
		c.progressAt = time.Time{}
		c.slowSocket = false
	}
	c.mu.Unlock()
}

// park leaves the rest of out for when the socket is writable: the parker reports it
// (no goroutine waits), or, without one, the slow path finishes the write.
func (c *Client) park() {
	fl := c.e.fl
	c.slowSocket = true
	c.mu.Lock()
	if c.aborted {
		c.releaseOutLocked()
		c.resetQueueLocked(DropClosing)
		c.finishLocked()
		c.mu.Unlock()
		return
	}
	useParker := fl.park != nil && c.cc.nonBlocking() && !c.e.noParker
	if useParker {
		c.sched = schedParked
	} else {
		c.sched = schedSlow
	}
	c.mu.Unlock()
	fl.addWaiting(c)
	if useParker {
		if err := fl.park.arm(c); err == nil {
			return
		}
		c.mu.Lock()
		c.sched = schedSlow
		c.mu.Unlock()
	}
	go c.slowFlush()
}

// writable is the parker's report: hand the writer back to the flusher.
func (c *Client) writable() {
	c.mu.Lock()
	if c.sched != schedParked {
		c.mu.Unlock()
		return
	}
	gen := c.readyLocked()
	c.mu.Unlock()
	c.cc.grow() // it drained: give it more room (no writer runs it until the push)
	c.e.fl.removeWaiting(c)
	c.e.fl.pushReady(c, gen)
}

// slowFlush finishes out with blocking writes on a goroutine of the connection (its
// slow path), then hands the writer back to the flusher. The socket accepting nothing
// for WriteTimeout fails the write.
func (c *Client) slowFlush() {
	defer c.e.fl.removeWaiting(c)
	n, err := c.cc.writevBlocking(c.iovecs(), c.e.cfg.WriteTimeout)
	c.wrote(n)
	if err != nil {
		c.writeFailed(err)
		return
	}
	c.cc.grow()
	c.mu.Lock()
	if c.aborted {
		c.releaseOutLocked()
		c.resetQueueLocked(DropClosing)
		c.finishLocked()
		c.mu.Unlock()
		return
	}
	gen := c.readyLocked()
	c.mu.Unlock()
	c.e.fl.pushReady(c, gen)
}

// seal ends the write side once the close frame is written: FIN after it, and the
// client gets closeGrace to answer before its connection is cut.
func (c *Client) seal() {
	sealed := c.cc.sealWrites()
	if sealed {
		_ = c.cc.SetReadDeadline(time.Now().Add(closeGrace))
		c.wakeReader() // the deadline bounds a read; a parked reader has none
	}
	c.mu.Lock()
	c.finishLocked()
	c.mu.Unlock()
	if !sealed {
		_ = c.conn.CloseNow() // after finishLocked: the socket closes at once
	}
}

// writeFailed ends a connection whose write failed: the socket is reset.
func (c *Client) writeFailed(err error) {
	c.mu.Lock()
	c.setDiscLocked(DiscWriteError)
	c.aborted = true
	c.state = stateClosed
	c.releaseOutLocked()
	c.resetQueueLocked(DropClosing)
	c.finishLocked()
	c.mu.Unlock()
	c.e.log.Debug("write failed", "session", c.session, "err", err)
	c.cc.resetOnClose()
	_ = c.conn.CloseNow()
}

// checkStall resets a connection whose socket took nothing for WriteTimeout while it
// waited (parked or on its slow path), or that could not finish its close within
// closeGrace. It runs on the stall checker.
func (c *Client) checkStall(now time.Time) {
	c.mu.Lock()
	if c.sched != schedParked && c.sched != schedSlow {
		c.mu.Unlock()
		return
	}
	stalled := !c.progressAt.IsZero() && now.Sub(c.progressAt) > c.e.cfg.WriteTimeout
	closing := c.closeQuick && now.Sub(c.closeAt) > closeGrace
	if !stalled && !closing {
		c.mu.Unlock()
		return
	}
	c.setDiscLocked(DiscWriteError)
	c.aborted = true
	c.state = stateClosed
	c.resetQueueLocked(DropClosing)
	parked := c.sched == schedParked
	if parked {
		c.releaseOutLocked() // nobody else holds the writer
		c.finishLocked()
	}
	c.mu.Unlock()
	c.e.fl.stalls.Add(1)
	if parked {
		c.e.fl.park.disarm(c)
		c.e.fl.removeWaiting(c)
	}
	// The slow path's write fails once the socket is closed, and it finishes itself.
	c.cc.resetOnClose()
	_ = c.conn.CloseNow()
}

// abort resets the connection now (teardown, engine close, too many pending control
// frames): a parked writer is released; one on a worker or goroutine finds it aborted.
func (c *Client) abort() {
	c.mu.Lock()
	c.aborted = true
	c.state = stateClosed
	parked := c.sched == schedParked
	if parked {
		c.releaseOutLocked()
		c.resetQueueLocked(DropClosing)
		c.finishLocked()
	}
	c.mu.Unlock()
	if parked {
		c.e.fl.park.disarm(c)
		c.e.fl.removeWaiting(c)
	}
	c.mu.Lock()
	if c.jobCancel != nil {
		c.jobCancel()
	}
	c.mu.Unlock()
	c.cc.resetOnClose()
	_ = c.conn.CloseNow()
}

// runJobGoroutine runs a subscribe answer and its recovery off the workers (it may
// wait for the bus and for the socket), then hands the writer back to the flusher.
func (c *Client) runJobGoroutine(j *replayJob) {
	ctx, cancel := context.WithCancel(c.e.ctx)
	c.mu.Lock()
	if c.aborted {
		cancel()
	}
	c.jobCancel = cancel
	c.mu.Unlock()
	err := c.runJob(ctx, j)
	c.mu.Lock()
	c.jobCancel = nil
	c.mu.Unlock()
	cancel()
	if err != nil {
		c.writeFailed(err)
		return
	}
	c.mu.Lock()
	gen := c.readyLocked()
	c.mu.Unlock()
	c.e.fl.pushReady(c, gen)
}

// writeBlocking writes fr (and the library's frames waiting before it) on the job
// goroutine, waiting for the socket as needed.
func (c *Client) writeBlocking(fr *frame) error {
	c.mu.Lock()
	if c.aborted {
		c.mu.Unlock()
		return net.ErrClosed
	}
	bufs := append(c.ctrl[:len(c.ctrl):len(c.ctrl)], fr.wireFor(c.deflate, c.e.cfg.CompressionThreshold, &c.e.metrics.framesCompressed))
	c.ctrl, c.ctrlBytes = nil, 0
	c.mu.Unlock()
	n, err := c.cc.writevBlocking(bufs, c.e.cfg.WriteTimeout)
	if err != nil {
		return err
	}
	c.cc.lookBehind(n) // the job goroutine runs the writer
	m := c.e.metrics
	m.framesWritten.Add(1)
	m.bytesRaw.Add(uint64(len(fr.payload())))
	if n := fr.nEvents(); n > 0 {
		m.eventFrames.Add(1)
		m.eventsDelivered.Add(uint64(n))
		if fr.replayed {
			m.eventsReplayed.Add(uint64(n))
		}
	}
	return nil
}

// writeFrame writes one control message on the job goroutine.
func (c *Client) writeFrame(b []byte) error { return c.writeBlocking(newTextFrame(b)) }

// writeEvents writes evs as one events frame on the job goroutine.
func (c *Client) writeEvents(evs []*outEvent, replayed bool) error {
	return c.writeBlocking(newEventsFrame(evs, replayed))
}
