package presence

import (
	"context"
	"maps"
	"slices"
	"time"

	"encore.app/realtime/protocol"
)

// view is the cluster's members of one followed channel: the latest summary of each
// live instance and, per listed user, how many instances list it. Guarded by
// Tracker.mu. Diffs are computed and delivered under that lock, so every watcher sees
// them in order, and a snapshot taken under it sits between two diffs.
type view struct {
	ch      string
	byInst  map[string]*Summary // live instances' summaries (this one's included)
	early   map[string]*Summary // summaries of instances not (yet) known alive
	present map[string]int      // user -> instances listing it
	fns     map[int]func(*protocol.PresenceDiff)
	stop    func() // the store follow
	loaded  bool   // the stored summaries were read
	pending []*Summary
	ready   chan struct{} // closed when loaded
}

// Watch calls fn with every change of channel's members until stop is called (see
// stream.Presence). The first call of a channel follows it in the store and reads its
// summaries on a tracker goroutine; until then snapshots wait.
func (t *Tracker) Watch(channel string, fn func(*protocol.PresenceDiff)) (stop func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return func() {}
	}
	v := t.views[channel]
	if v == nil {
		v = t.followLocked(channel)
	}
	id := t.nextWatch
	t.nextWatch++
	v.fns[id] = fn
	return func() {
		t.mu.Lock()
		if t.views[channel] != v {
			t.mu.Unlock()
			return
		}
		delete(v.fns, id)
		last := len(v.fns) == 0
		if last {
			delete(t.views, channel)
		}
		t.mu.Unlock()
		if last {
			v.stop()
		}
	}
}

// followLocked creates channel's view: this instance's members now, the store's
// follow, and a loader for the stored summaries.
func (t *Tracker) followLocked(channel string) *view {
	v := &view{ch: channel, byInst: map[string]*Summary{}, early: map[string]*Summary{}, present: map[string]int{},
		fns: map[int]func(*protocol.PresenceDiff){}, ready: make(chan struct{}), stop: func() {}}
	t.views[channel] = v
	if lc := t.local[channel]; lc != nil && lc.stored {
		t.applyLocked(v, t.ownLocked(channel, lc))
	}
	stop, err := t.st.Follow(channel, func(s *Summary) { t.onSummary(v, s) })
	if err != nil {
		t.log.Warn("presence: follow failed; the view shows this instance only", "channel", channel, "err", err)
	} else {
		v.stop = stop
	}
	t.wg.Add(1)
	go t.load(v)
	return v
}

// ownLocked is this instance's last written summary of a channel, rebuilt.
func (t *Tracker) ownLocked(channel string, lc *localChan) *Summary {
	s := &Summary{Channel: channel, Instance: t.cfg.Instance, Inc: t.inc, V: lc.v,
		Users: len(lc.users), Conns: lc.conns, Anonymous: lc.anon, Members: map[string]int{}}
	for u := range lc.listed {
		s.Members[u] = lc.users[u]
	}
	return s
}

// load reads v's stored summaries (retrying until the view is dropped), applies them,
// then what the follow delivered meanwhile.
func (t *Tracker) load(v *view) {
	defer t.wg.Done()
	for {
		ctx, cancel := context.WithTimeout(t.ctx, t.cfg.Timeout)
		sums, err := t.st.Load(ctx, v.ch)
		cancel()
		t.mu.Lock()
		if t.closed || t.views[v.ch] != v {
			t.mu.Unlock()
			return
		}
		if err == nil {
			for _, s := range sums {
				t.receiveLocked(v, s)
			}
			v.loaded = true
			for _, s := range v.pending {
				t.receiveLocked(v, s)
			}
			v.pending = nil
			close(v.ready)
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
		t.log.Warn("presence: loading a channel failed, retrying", "channel", v.ch, "err", err)
		select {
		case <-t.ctx.Done():
			return
		case <-time.After(retryDelay):
		}
	}
}

// onSummary is the store's follow callback.
func (t *Tracker) onSummary(v *view, s *Summary) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.views[v.ch] != v {
		return
	}
	if !v.loaded {
		v.pending = append(v.pending, s)
		return
	}
	t.receiveLocked(v, s)
}

// receiveLocked applies a summary read from the store: this instance's own are
// applied when written (due), a not-yet-live instance's wait for its heartbeat, a
// dead incarnation's are dropped.
func (t *Tracker) receiveLocked(v *view, s *Summary) {
	if s.Channel != v.ch || s.Instance == t.cfg.Instance {
		return
	}
	if !t.isAliveLocked(s.Instance, s.Inc) {
		// Its heartbeat may still be on its way (a new instance, a restart): keep the
		// newest until onAlive applies it, or the instance lapses.
		if e := v.early[s.Instance]; e == nil || e.Inc != s.Inc || e.V < s.V {
			v.early[s.Instance] = s
		}
		return
	}
	t.applyLocked(v, s)
}

// applyLocked makes s its instance's summary in v unless v holds a newer one.
func (t *Tracker) applyLocked(v *view, s *Summary) {
	if old := v.byInst[s.Instance]; old != nil && old.Inc == s.Inc && old.V >= s.V {
		return
	}
	if s.Empty() {
		t.replaceLocked(v, s.Instance, nil)
		return
	}
	t.replaceLocked(v, s.Instance, s)
}

// replaceLocked sets inst's summary in v (nil removes it) and delivers the joins and
// leaves it causes.
func (t *Tracker) replaceLocked(v *view, inst string, s *Summary) {
	old := v.byInst[inst]
	if old == nil && s == nil {
		return
	}
	if s == nil {
		delete(v.byInst, inst)
	} else {
		v.byInst[inst] = s
	}
	var d protocol.PresenceDiff
	if old != nil {
		for u := range old.Members {
			if _, still := s.member(u); still {
				continue
			}
			v.present[u]--
			if v.present[u] <= 0 {
				delete(v.present, u)
				d.Leaves = append(d.Leaves, u)
			}
		}
	}
	if s != nil {
		for u := range s.Members {
			if _, was := old.member(u); was {
				continue
			}
			v.present[u]++
			if v.present[u] == 1 {
				d.Joins = append(d.Joins, u)
			}
		}
	}
	if len(d.Joins) == 0 && len(d.Leaves) == 0 {
		return
	}
	slices.Sort(d.Joins)
	slices.Sort(d.Leaves)
	d.Type, d.Channel = protocol.TypePresenceDiff, v.ch
	t.diffs.Add(1)
	for _, fn := range v.fns {
		fn(&d)
	}
}

func (s *Summary) member(u string) (int, bool) {
	if s == nil {
		return 0, false
	}
	n, ok := s.Members[u]
	return n, ok
}

// Snapshot delivers channel's members (see stream.Presence): from the view of a
// followed channel, in the order of its diffs (waiting for its first read of the
// store), else from one read of the store with this instance's current members.
func (t *Tracker) Snapshot(ctx context.Context, channel string, limit int, deliver func(*protocol.PresenceSnapshot)) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrClosed
	}
	if v := t.views[channel]; v != nil {
		t.mu.Unlock()
		select {
		case <-v.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		t.mu.Lock()
		if t.views[channel] == v {
			sums := make([]*Summary, 0, len(v.byInst))
			for _, s := range v.byInst {
				sums = append(sums, s)
			}
			deliver(merge(channel, sums, limit))
			t.mu.Unlock()
			return nil
		}
		t.mu.Unlock()
	} else {
		t.mu.Unlock()
	}
	stored, err := t.st.Load(ctx, channel)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var sums []*Summary
	for _, s := range stored {
		if s.Channel == channel && s.Instance != t.cfg.Instance && !s.Empty() && t.isAliveLocked(s.Instance, s.Inc) {
			sums = append(sums, s)
		}
	}
	if lc := t.local[channel]; lc != nil && !lc.empty() {
		own := t.ownLocked(channel, lc)
		own.Members = maps.Clone(lc.users) // every member: this instance knows them all
		sums = append(sums, own)
	}
	deliver(merge(channel, sums, limit))
	return nil
}

// merge adds up live instances' summaries of a channel.
func merge(channel string, sums []*Summary, limit int) *protocol.PresenceSnapshot {
	out := &protocol.PresenceSnapshot{Channel: channel, Members: []protocol.Member{}}
	conns := map[string]int{}
	userSum := 0
	for _, s := range sums {
		out.Conns += s.Conns
		out.Anonymous += s.Anonymous
		userSum += s.Users
		if s.Users > len(s.Members) {
			out.Approximate = true
		}
		for u, n := range s.Members {
			conns[u] += n
		}
	}
	out.Users = len(conns)
	if out.Approximate {
		out.Users = max(userSum, len(conns))
	}
	users := make([]string, 0, len(conns))
	for u := range conns {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, u := range users[:min(len(users), limit)] {
		out.Members = append(out.Members, protocol.Member{User: u, Conns: conns[u]})
	}
	out.Truncated = len(out.Members) < out.Users
	return out
}
