package stream

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"

	"encore.app/realtime/protocol"
)

// Presence (docs/protocol.md "Presence"): every subscription is a member of its
// channel. The engine tells Config.Presence (realtime/presence.Tracker, which keeps the
// cluster's view in NATS) of every subscribe and unsubscribe, relays the tracker's
// joins and leaves to the connections that subscribed with "presence": true, and
// answers snapshot requests ("presence" frames, GET /v2/realtime/presence) with the
// read permission of the channel.

// Presence is the engine's view of the presence tracker. Join and Leave must not block
// (they run on connections' read loops).
type Presence interface {
	// Join counts one more connection of user ("" = anonymous) on channel; Leave one fewer.
	Join(channel, user string)
	Leave(channel, user string)
	// Watch calls fn with every change of channel's members (across the cluster) until
	// stop is called. fn must not block; it runs on the tracker's goroutines, in the
	// order of the changes.
	Watch(channel string, fn func(*protocol.PresenceDiff)) (stop func())
	// Snapshot calls deliver once with channel's members (at most limit listed), in the
	// order of Watch's calls: a snapshot delivered after a diff includes it. It may
	// read the store (bounded by ctx); an error means deliver is not called.
	Snapshot(ctx context.Context, channel string, limit int, deliver func(*protocol.PresenceSnapshot)) error
}

// Default presence limits (Config.PresenceMaxMembers).
const (
	DefaultPresenceLimit      = 100
	DefaultPresenceMaxMembers = 1000
)

// ErrPresenceUnavailable is returned by a Presence that cannot read its store.
var ErrPresenceUnavailable = errors.New("presence unavailable")

// presenceHub relays diffs to the connections that asked for them: per channel, one
// watch of the tracker and a copy-on-write set of connections (read without a lock
// by the tracker's callbacks). Lock order: hub.mu, then the tracker's lock (Watch,
// stop); callbacks take no hub lock.
type presenceHub struct {
	e  *Engine
	mu sync.Mutex
	ch map[string]*presenceChan
	// per connection: the channels it gets diffs for (guarded by mu)
	by map[*Client]map[string]struct{}
}

type presenceChan struct {
	clients atomic.Pointer[[]*Client]
	stop    func()
}

func (h *presenceHub) init(e *Engine) {
	h.e = e
	h.ch = map[string]*presenceChan{}
	h.by = map[*Client]map[string]struct{}{}
}

// add makes c get the diffs of channels.
func (h *presenceHub) add(c *Client, channels []string) {
	p := h.e.ext.presence
	if p == nil || len(channels) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	mine := h.by[c]
	if mine == nil {
		mine = map[string]struct{}{}
		h.by[c] = mine
	}
	for _, name := range channels {
		if _, dup := mine[name]; dup {
			continue
		}
		mine[name] = struct{}{}
		pc := h.ch[name]
		if pc == nil {
			pc = &presenceChan{}
			pc.clients.Store(&[]*Client{})
			h.ch[name] = pc
			pc.stop = p.Watch(name, func(d *protocol.PresenceDiff) { relayDiff(pc, d) })
		}
		cur := *pc.clients.Load()
		next := make([]*Client, len(cur), len(cur)+1)
		copy(next, cur)
		next = append(next, c)
		pc.clients.Store(&next)
	}
}

func relayDiff(pc *presenceChan, d *protocol.PresenceDiff) {
	clients := *pc.clients.Load()
	if len(clients) == 0 {
		return
	}
	frame := protocol.Marshal(d)
	for _, c := range clients {
		c.enqueueCtrl(frame)
	}
}

// remove stops the diffs of channels to c (all of them when channels is nil).
func (h *presenceHub) remove(c *Client, channels []string) {
	if h.e.ext.presence == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	mine := h.by[c]
	if mine == nil {
		return
	}
	if channels == nil {
		for name := range mine {
			channels = append(channels, name)
		}
	}
	for _, name := range channels {
		if _, ok := mine[name]; !ok {
			continue
		}
		delete(mine, name)
		pc := h.ch[name]
		cur := *pc.clients.Load()
		next := make([]*Client, 0, len(cur))
		for _, x := range cur {
			if x != c {
				next = append(next, x)
			}
		}
		pc.clients.Store(&next)
		if len(next) == 0 {
			pc.stop()
			delete(h.ch, name)
		}
	}
	if len(mine) == 0 {
		delete(h.by, c)
	}
}

// presenceSubscribed makes c get the diffs of the channels (new or already
// subscribed) of a subscribe with "presence": true, then records the members the
// subscribe added. Read loop only.
func (c *Client) presenceSubscribed(f *protocol.ClientFrame, asked, added []string) {
	e := c.e
	p := e.ext.presence
	if p == nil {
		return
	}
	if f.Presence {
		// Follow first: the connection's own join is then one of the diffs it gets.
		e.pool.mu.Lock()
		var on []string
		for _, ch := range asked {
			if c.subAt(ch) >= 0 {
				on = append(on, ch)
			}
		}
		e.pool.mu.Unlock()
		e.ext.hub.add(c, on)
	}
	user := c.UserID()
	for _, ch := range added {
		p.Join(ch, user)
	}
}

// presenceUnsubscribed ends the membership (and diffs) of channels c left.
func (c *Client) presenceUnsubscribed(removed []string) {
	p := c.e.ext.presence
	if p == nil || len(removed) == 0 {
		return
	}
	user := c.UserID()
	for _, ch := range removed {
		p.Leave(ch, user)
	}
	c.e.ext.hub.remove(c, removed)
}

// presenceTeardown ends every membership of c; it runs before the pool forgets c.
func (c *Client) presenceTeardown() {
	e := c.e
	if e.ext.presence == nil {
		return
	}
	e.pool.mu.Lock()
	chs := make([]string, 0, len(c.subs))
	for _, s := range c.subs {
		chs = append(chs, s.ch)
	}
	e.pool.mu.Unlock()
	user := c.UserID()
	for _, ch := range chs {
		e.ext.presence.Leave(ch, user)
	}
	e.ext.hub.remove(c, nil)
}

// presenceLimit clamps a requested member limit.
func (e *Engine) presenceLimit(n int) int {
	if n <= 0 {
		n = DefaultPresenceLimit
	}
	return min(n, e.cfg.PresenceMaxMembers)
}

// presenceSnapshot checks the request and asks the tracker; deliver runs at most once.
func (e *Engine) presenceSnapshot(ctx context.Context, id *Identity, ch string, limit int, deliver func(*protocol.PresenceSnapshot)) error {
	if rerr := e.checkRead(id, ch); rerr != nil {
		e.ext.presReqs.WithLabelValues("refused").Inc()
		return rerr
	}
	p := e.ext.presence
	if p == nil {
		e.ext.presReqs.WithLabelValues("refused").Inc()
		return refused(protocol.CodeUnavailable, http.StatusNotImplemented, "presence is not enabled on this server")
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ReplayTimeout)
	defer cancel()
	if err := p.Snapshot(ctx, ch, e.presenceLimit(limit), deliver); err != nil {
		e.ext.presReqs.WithLabelValues("unavailable").Inc()
		e.log.Warn("presence: snapshot failed", "channel", ch, "err", err)
		return refused(protocol.CodeUnavailable, http.StatusServiceUnavailable, "presence could not be read: retry later")
	}
	e.ext.presReqs.WithLabelValues("ok").Inc()
	return nil
}

// Presence answers a presence snapshot request for id (errors: bad channel, forbidden,
// unavailable).
func (e *Engine) Presence(ctx context.Context, id *Identity, channel string, limit int) (*protocol.PresenceSnapshot, error) {
	var out *protocol.PresenceSnapshot
	if err := e.presenceSnapshot(ctx, id, channel, limit, func(s *protocol.PresenceSnapshot) { out = s }); err != nil {
		return nil, err
	}
	return out, nil
}

// handlePresence answers a presence frame; the snapshot is enqueued in the order of
// the diffs (Presence.Snapshot), on a goroutine of the engine.
func (c *Client) handlePresence(f *protocol.ClientFrame) {
	e := c.e
	if !e.ext.begin(c) {
		c.requestFailed(f.ID, refused(protocol.CodeRateLimited, http.StatusTooManyRequests, "at most %d history or presence requests at a time per connection", maxInflight))
		return
	}
	id := c.id.Load()
	e.ext.run(func() {
		defer e.ext.end(c)
		err := e.presenceSnapshot(e.ctx, id, f.Channel, f.Limit, func(s *protocol.PresenceSnapshot) {
			s.Type, s.ID = protocol.TypePresence, f.ID
			c.enqueueCtrl(protocol.Marshal(s))
		})
		if err != nil {
			c.requestFailed(f.ID, err)
		}
	})
}

// ServePresence handles GET /v2/realtime/presence?channel=&limit= with the credential
// of the stream (token or cookie).
func (e *Engine) ServePresence(w http.ResponseWriter, r *http.Request) {
	id, ok := e.requestIdentity(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	ch := q.Get("channel")
	if ch == "" {
		writeRequestError(w, refused(protocol.CodeBadFrame, http.StatusBadRequest, "channel is required"))
		return
	}
	limit := 0
	if s := q.Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			writeRequestError(w, refused(protocol.CodeBadFrame, http.StatusBadRequest, "limit: a number from 0"))
			return
		}
		limit = v
	}
	snap, err := e.Presence(r.Context(), id, ch, limit)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	writeJSONBody(w, protocol.Marshal(snap))
}
