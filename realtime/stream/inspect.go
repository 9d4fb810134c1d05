package stream

import (
	"cmp"
	"container/heap"
	"slices"
	"time"

	"encore.app/realtime/protocol"
)

// Introspection for the operator's console: the busiest channels of this instance and
// the connections of one user. Both copy what they read and hold each lock only for
// the copy; neither blocks on a connection.

// Bounds of what introspection returns.
const (
	// MaxTopChannels bounds TopChannels' n.
	MaxTopChannels = 100
	// MaxInspectConnections bounds the connections one Connections call returns.
	MaxInspectConnections = 200
	// MaxInspectChannels bounds the channels listed per connection (Channels holds
	// the first ones by name; ChannelCount has them all).
	MaxInspectChannels = 20
)

// ChannelCount is one channel and its subscribers on this instance: stream connections
// subscribed to it, and long-polls waiting on it now.
type ChannelCount struct {
	Channel     string `json:"channel"`
	Subscribers int    `json:"subscribers"`
	Polls       int    `json:"polls,omitempty"`
}

// ChannelTop is an instance's busiest channels: Top holds at most the n asked for,
// most subscribers first; Total counts every channel with a subscriber or a waiting
// poll (Top is complete when len(Top) == Total).
type ChannelTop struct {
	Total int            `json:"total"`
	Top   []ChannelCount `json:"top"`
}

// TopChannels returns the n channels (at most MaxTopChannels) with the most
// subscribers. It walks the channel index once under the pool's lock (dispatch waits
// for it: a bounded heap keeps the walk to a comparison per channel) and the waiting
// polls once under theirs.
func (e *Engine) TopChannels(n int) ChannelTop {
	n = min(max(n, 0), MaxTopChannels)
	// Waiting polls: few (bounded by MaxPollWaiters) and short-lived.
	var polls map[string]int
	e.lp.mu.Lock()
	if len(e.lp.byChannel) > 0 {
		polls = make(map[string]int, len(e.lp.byChannel))
		for ch, set := range e.lp.byChannel {
			polls[ch] = len(set)
		}
	}
	e.lp.mu.Unlock()
	h := &channelHeap{}
	e.pool.mu.Lock()
	total := len(e.pool.index)
	for ch, subs := range e.pool.index {
		h.offer(ChannelCount{Channel: ch, Subscribers: len(subs), Polls: polls[ch]}, n)
	}
	for ch, k := range polls {
		if _, ok := e.pool.index[ch]; !ok {
			total++ // a channel only polls wait on
			h.offer(ChannelCount{Channel: ch, Polls: k}, n)
		}
	}
	e.pool.mu.Unlock()
	top := slices.Clone(*h)
	slices.SortFunc(top, func(a, b ChannelCount) int {
		if d := cmp.Compare(b.Subscribers+b.Polls, a.Subscribers+a.Polls); d != 0 {
			return d
		}
		return cmp.Compare(a.Channel, b.Channel)
	})
	return ChannelTop{Total: total, Top: top}
}

// channelHeap is a min-heap of the n largest counts offered so far.
type channelHeap []ChannelCount

func (h channelHeap) Len() int { return len(h) }
func (h channelHeap) Less(i, j int) bool {
	a, b := h[i].Subscribers+h[i].Polls, h[j].Subscribers+h[j].Polls
	if a != b {
		return a < b
	}
	return h[i].Channel > h[j].Channel
}
func (h channelHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *channelHeap) Push(x any)   { *h = append(*h, x.(ChannelCount)) }
func (h *channelHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func (h *channelHeap) offer(c ChannelCount, n int) {
	if n == 0 {
		return
	}
	if h.Len() < n {
		heap.Push(h, c)
		return
	}
	// Integers only on the hot path: a tie with the smallest keeps the one held.
	if min := (*h)[0]; c.Subscribers+c.Polls > min.Subscribers+min.Polls {
		(*h)[0] = c
		heap.Fix(h, 0)
	}
}

// healthAt is a client's last health frame and when it arrived.
type healthAt struct {
	report protocol.HealthReport
	at     time.Time
}

// noteHealth keeps the client's latest health report for Connections.
func (c *Client) noteHealth(h *protocol.HealthReport) {
	if h == nil {
		return
	}
	c.health.Store(&healthAt{report: *h, at: time.Now()})
}

// Connection is one open stream connection or waiting long-poll, as the operator's
// connection inspector shows it.
type Connection struct {
	// Session is the stream connection's session ("" for a poll).
	Session string `json:"session,omitempty"`
	User    string `json:"user"`
	// Transport is "stream" or "poll".
	Transport string `json:"transport"`
	// Since is when the connection opened (the poll started waiting), unix ms.
	Since int64 `json:"since"`
	// Channels lists at most MaxInspectChannels of its channels, by name; ChannelCount
	// counts them all.
	Channels     []string `json:"channels"`
	ChannelCount int      `json:"channelCount"`
	// QueueEvents and QueueBytes are what waits in the connection's queue now.
	QueueEvents int  `json:"queueEvents"`
	QueueBytes  int  `json:"queueBytes"`
	Deflate     bool `json:"deflate,omitempty"`
	// LastReadMs is when the server last read a frame from it, unix ms.
	LastReadMs int64 `json:"lastReadMs,omitempty"`
	// Health is the last health frame the client sent (round trip, latency,
	// reconnects, recoveries) and HealthAt when, unix ms; nil before the first.
	Health   *protocol.HealthReport `json:"health,omitempty"`
	HealthAt int64                  `json:"healthAt,omitempty"`
}

// Connections returns the open connections and waiting polls that match (given the
// user ID and the session, "" for a poll), at most limit of them (bounded by
// MaxInspectConnections), oldest first, and how many matched in all.
func (e *Engine) Connections(match func(user, session string) bool, limit int) (conns []Connection, matched int) {
	limit = min(max(limit, 0), MaxInspectConnections)
	var found []*Client
	for _, c := range e.snapshotClients() {
		if match(c.UserID(), c.session) {
			found = append(found, c)
		}
	}
	slices.SortFunc(found, func(a, b *Client) int { return a.opened.Compare(b.opened) })
	matched = len(found)
	for _, c := range found[:min(len(found), limit)] {
		conns = append(conns, c.describe())
	}
	e.lp.mu.Lock()
	var polls []Connection
	for w := range e.lp.all {
		if !match(w.user, "") {
			continue
		}
		matched++
		polls = append(polls, Connection{User: w.user, Transport: TransportPoll, Since: w.since.UnixMilli(),
			Channels: firstChannels(w.channels), ChannelCount: len(w.channels)})
	}
	e.lp.mu.Unlock()
	slices.SortFunc(polls, func(a, b Connection) int { return cmp.Compare(a.Since, b.Since) })
	for _, p := range polls {
		if len(conns) >= limit {
			break
		}
		conns = append(conns, p)
	}
	return conns, matched
}

// describe copies what the inspector shows of c.
func (c *Client) describe() Connection {
	out := Connection{Session: c.session, User: c.UserID(), Transport: TransportStream, Since: c.opened.UnixMilli(),
		Deflate: c.deflate, LastReadMs: c.lastRead.Load() / int64(time.Millisecond)}
	c.e.pool.mu.Lock()
	chans := make([]string, 0, len(c.subs))
	for _, s := range c.subs {
		chans = append(chans, s.ch)
	}
	c.e.pool.mu.Unlock()
	out.Channels, out.ChannelCount = firstChannels(chans), len(chans)
	c.mu.Lock()
	out.QueueEvents, out.QueueBytes = c.qEvents, c.qBytes
	c.mu.Unlock()
	if h := c.health.Load(); h != nil {
		r := h.report
		out.Health, out.HealthAt = &r, h.at.UnixMilli()
	}
	return out
}

// firstChannels returns a sorted copy of the first MaxInspectChannels names.
func firstChannels(chans []string) []string {
	out := slices.Clone(chans)
	slices.Sort(out)
	if len(out) > MaxInspectChannels {
		out = out[:MaxInspectChannels]
	}
	return out
}
