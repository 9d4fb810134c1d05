package stream

import (
	"slices"
	"sync"
	"sync/atomic"

	"encore.app/realtime/protocol"
)

// pool is the channel -> subscribers index plus the replay window. Its lock makes a
// subscription atomic with respect to dispatch: an event is either in the window part a
// new subscriber replays, or fanned out to it live, never both and never neither. Every
// subscriber records the head it joined at; the fan-out, which runs after dispatch
// recorded the events, gives it only those after that head (fanout.go).
//
// A channel's subscriber list is changed in place (append; removal swaps the last one
// into the hole, each connection knowing its position), and the fan-out copies it
// under the lock into a buffer of its own: joining or leaving costs O(1), where a
// copy-on-write list cost O(subscribers) each, 800 MB of copies for 10,000 connections
// joining one channel.
type pool struct {
	mu     sync.Mutex
	index  map[string][]sub // guarded by mu; copy under it to iterate outside
	window ring
	head   uint64 // last dispatched sequence
	floor  uint64 // every event with seq > floor is in the window
	gen    uint64 // incremented when the stream is recreated: older events are not fanned out
	// floorNow mirrors floor for readers without the lock (lagging connections).
	floorNow atomic.Uint64
}

// sub is one subscriber of a channel.
type sub struct {
	c     *Client
	after uint64 // head when it subscribed: it gets events with seq > after live
}

func newPool(windowSize int) *pool {
	return &pool{index: map[string][]sub{}, window: ring{buf: make([]*outEvent, windowSize)}}
}

// reset sets the position after which dispatch starts (the bus head at start).
func (p *pool) reset(head uint64) {
	p.mu.Lock()
	p.head, p.floor = head, head
	p.floorNow.Store(head)
	p.mu.Unlock()
}

// record records ev as dispatched; false for a sequence already dispatched.
func (p *pool) record(ev *outEvent) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ev.seq <= p.head {
		return false
	}
	ev.gen = p.gen
	// A gap (events deleted by retention before this instance read them, or malformed
	// messages the bus skipped) was never in the window: cursors before it go to the bus,
	// which knows whether the missing events still exist.
	if gap := ev.seq - 1; gap > p.head && gap > p.floor {
		p.floor = gap
	}
	if old := p.window.push(ev); old != nil {
		p.floor = max(p.floor, old.seq)
	}
	p.head = ev.seq
	p.floorNow.Store(p.floor)
	return true
}

// subscribe adds c to channels (already validated and authorized) and hands the replay
// job, with the per-channel results, to submit. submit runs under the pool's lock, so
// the job is queued before any live event of the new channels (dispatch fans out
// after taking the same lock): the answer and the replay always precede them. It is
// called by c's read loop only.
func (p *pool) subscribe(c *Client, channels []string, cur *protocol.Cursor, epoch string, maxSubs int, submit func(*replayJob)) (added []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var results []protocol.ChannelResult
	var job *replayJob
	defer func() { job.results = results; submit(job) }()
	hadSubs := len(c.subs) > 0
	for _, ch := range channels {
		if c.subAt(ch) >= 0 {
			results = append(results, protocol.ChannelResult{Channel: ch, OK: true})
			continue
		}
		if len(c.subs) >= maxSubs {
			results = append(results, protocol.ChannelResult{Channel: ch, Code: protocol.CodeTooManySubs,
				Error: "subscription limit reached"})
			continue
		}
		c.subs = append(c.subs, subEntry{ch: ch, after: p.head, pos: len(p.index[ch])})
		p.index[ch] = append(p.index[ch], sub{c: c, after: p.head})
		added = append(added, ch)
		results = append(results, protocol.ChannelResult{Channel: ch, OK: true})
	}
	job = &replayJob{channels: added, head: p.head}
	if cur.IsZero() {
		return added
	}
	job.cursor = *cur
	job.recovery = true
	switch {
	case hadSubs:
		job.rec = &protocol.Recovery{Reason: protocol.ReasonHasSubs}
	case cur.Epoch != epoch:
		job.rec = &protocol.Recovery{Reason: protocol.ReasonEpochMismatch}
	case cur.Seq > p.head:
		job.checkAhead = true // the bus may be ahead of this instance; the writer asks it
	case cur.Seq == p.head || len(added) == 0:
		job.rec = &protocol.Recovery{Recovered: true, Source: "memory"}
	case cur.Seq >= p.floor:
		set := make(map[string]struct{}, len(added))
		for _, ch := range added {
			set[ch] = struct{}{}
		}
		job.events = p.window.since(cur.Seq, func(e *outEvent) bool { _, ok := set[e.channel]; return ok })
		job.rec = &protocol.Recovery{Recovered: true, Source: "memory"}
	default:
		job.fromBus = true
	}
	return added
}

// unsubscribe removes c from channels and reports which it was subscribed to.
func (p *pool) unsubscribe(c *Client, channels []string) (removed []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ch := range channels {
		i := c.subAt(ch)
		if i < 0 {
			continue
		}
		p.removeLocked(c, i)
		last := len(c.subs) - 1
		c.subs[i] = c.subs[last]
		c.subs[last] = subEntry{}
		c.subs = c.subs[:last]
		removed = append(removed, ch)
	}
	return removed
}

// removeAll removes c from every channel; returns how many subscriptions it held.
func (p *pool) removeAll(c *Client) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(c.subs)
	for i := range c.subs {
		p.removeLocked(c, i)
	}
	c.subs = nil
	return n
}

// removeLocked takes c out of the list of its subscription si; c.subs still holds it
// (the caller removes it).
func (p *pool) removeLocked(c *Client, si int) {
	ch := c.subs[si].ch
	cur := p.index[ch]
	i := c.subs[si].pos
	if i >= len(cur) || cur[i].c != c {
		i = slices.IndexFunc(cur, func(s sub) bool { return s.c == c }) // never, but be safe
		if i < 0 {
			return
		}
	}
	last := len(cur) - 1
	if last == 0 {
		delete(p.index, ch)
		return
	}
	if i != last {
		moved := cur[last]
		cur[i] = moved
		if j := moved.c.subAt(ch); j >= 0 {
			moved.c.subs[j].pos = i
		}
	}
	cur[last] = sub{}
	cur = cur[:last]
	if cap(cur) > 64 && len(cur) < cap(cur)/4 {
		cur = append([]sub(nil), cur...) // shrink after many left
	}
	p.index[ch] = cur
}

// subEntry is one subscription of a connection: the channel, the head it joined at
// and its position in the channel's list. Guarded by pool.mu.
type subEntry struct {
	ch    string
	after uint64
	pos   int
}

// subAt is the index of ch in c.subs, -1 when c is not subscribed to it (pool.mu held).
func (c *Client) subAt(ch string) int {
	for i := range c.subs {
		if c.subs[i].ch == ch {
			return i
		}
	}
	return -1
}

// ring is a fixed-size FIFO of the most recent events, in sequence order.
type ring struct {
	buf   []*outEvent
	start int // index of the oldest
	n     int
}

// push appends ev and returns the evicted oldest event, if any.
func (r *ring) push(ev *outEvent) (evicted *outEvent) {
	if len(r.buf) == 0 {
		return ev
	}
	if r.n < len(r.buf) {
		r.buf[(r.start+r.n)%len(r.buf)] = ev
		r.n++
		return nil
	}
	evicted = r.buf[r.start]
	r.buf[r.start] = ev
	r.start = (r.start + 1) % len(r.buf)
	return evicted
}

func (r *ring) at(i int) *outEvent { return r.buf[(r.start+i)%len(r.buf)] }

// since returns the events with seq > after that match keep, oldest first.
func (r *ring) since(after uint64, keep func(*outEvent) bool) []*outEvent {
	// binary search over the ring for the first seq > after
	lo, hi := 0, r.n
	for lo < hi {
		mid := (lo + hi) / 2
		if r.at(mid).seq <= after {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	var out []*outEvent
	for j := lo; j < r.n; j++ {
		if e := r.at(j); keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// sinceLimited is since with bounds: it scans at most maxScan entries and stops once it
// kept maxEvents or maxBytes of encoded events. upTo is the seq of the last entry it
// scanned (after itself when none), and done tells that it reached the newest.
func (r *ring) sinceLimited(after uint64, keep func(*outEvent) bool, maxEvents, maxBytes, maxScan int) (out []*outEvent, upTo uint64, done bool) {
	lo, hi := 0, r.n
	for lo < hi {
		mid := (lo + hi) / 2
		if r.at(mid).seq <= after {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	upTo = after
	bytes := 0
	j := lo
	for ; j < r.n && j-lo < maxScan && len(out) < maxEvents && bytes < maxBytes; j++ {
		e := r.at(j)
		upTo = e.seq
		if keep(e) {
			out = append(out, e)
			bytes += len(e.enc)
		}
	}
	return out, upTo, j == r.n
}
