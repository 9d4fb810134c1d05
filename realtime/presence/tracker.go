package presence

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Tracker. Zero values take the defaults.
type Config struct {
	// Instance names this instance (unique in the cluster; required).
	Instance string
	// Store is shared by the cluster's trackers (required).
	Store Store
	// TTL: a dead instance's members disappear from every view within TTL of its last
	// heartbeat (default 15s). The tracker heartbeats every TTL/3. The store's liveness
	// records must lapse after TTL too.
	TTL time.Duration
	// Grace: a user whose last connection to a channel left stays a member this long
	// (default 5s): a reconnect within it announces nothing.
	Grace time.Duration
	// FlushInterval: a channel's summary is written at most once per interval
	// (default 100ms) when its members change; changes of connection counts only wait
	// CountDelay (default 1s).
	FlushInterval time.Duration
	CountDelay    time.Duration
	// MaxMembers bounds the users listed in one summary (default 1000).
	MaxMembers int
	// RefreshEvery rewrites every summary (default 6h), well inside the store's
	// retention of summaries.
	RefreshEvery time.Duration
	// Timeout bounds one store call of the tracker's own goroutines (default 2s).
	Timeout time.Duration
	Logger  *slog.Logger
}

// Defaults.
const (
	DefaultTTL           = 15 * time.Second
	DefaultGrace         = 5 * time.Second
	DefaultFlushInterval = 100 * time.Millisecond
	DefaultCountDelay    = time.Second
	DefaultMaxMembers    = 1000
	DefaultRefreshEvery  = 6 * time.Hour
)

const (
	putBatch   = 512         // summaries per Store.Put
	retryDelay = time.Second // after a failed write or load
)

// Tracker is one instance's presence: its members, their summaries in the store, the
// followed channels' views and the cluster's live instances. Start it, then Join and
// Leave (they never block: writes run on the tracker's flusher), Watch and Snapshot;
// Close stops it.
type Tracker struct {
	// immutable after New
	cfg Config
	st  Store
	inc string
	log *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // flusher, heartbeat, loaders, purges
	wake   chan struct{}  // flusher signal (capacity 1); never closed

	mu        sync.Mutex
	started   bool
	closed    bool
	local     map[string]*localChan // this instance's members, by channel
	dirty     map[string]time.Time  // channel -> when its summary is due
	views     map[string]*view      // followed channels
	alive     map[string]*aliveRec  // other live instances
	ver       uint64                // version of the last summary built
	stopAlive func()
	nextWatch int

	writes, writeErrors, diffs, purges atomic.Uint64
}

// localChan is this instance's members of one channel. Guarded by Tracker.mu.
type localChan struct {
	users   map[string]int         // user -> connections (0: in grace)
	grace   map[string]*graceTimer // users whose last connection left
	listed  map[string]struct{}    // users the last summary listed (kept stable)
	anon    int                    // anonymous connections
	conns   int                    // every connection
	lastPut time.Time              // when the last summary was built
	stored  bool                   // a non-empty summary is in the store
	v       uint64                 // its version
}

func newLocalChan() *localChan {
	return &localChan{users: map[string]int{}, grace: map[string]*graceTimer{}, listed: map[string]struct{}{}}
}

func (lc *localChan) empty() bool { return len(lc.users) == 0 && lc.anon == 0 }

type aliveRec struct {
	inc   string
	timer *time.Timer
}

// New checks cfg. Start begins.
func New(cfg Config) (*Tracker, error) {
	if cfg.Instance == "" || cfg.Store == nil {
		return nil, errors.New("presence: Instance and Store are required")
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.TTL, DefaultTTL)
	def(&cfg.Grace, DefaultGrace)
	def(&cfg.FlushInterval, DefaultFlushInterval)
	def(&cfg.CountDelay, DefaultCountDelay)
	def(&cfg.RefreshEvery, DefaultRefreshEvery)
	def(&cfg.Timeout, 2*time.Second)
	cfg.CountDelay = max(cfg.CountDelay, cfg.FlushInterval)
	if cfg.MaxMembers <= 0 {
		cfg.MaxMembers = DefaultMaxMembers
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	t := &Tracker{cfg: cfg, st: cfg.Store, inc: hex.EncodeToString(b[:]), log: cfg.Logger.With("component", "presence"),
		wake: make(chan struct{}, 1), local: map[string]*localChan{}, dirty: map[string]time.Time{},
		views: map[string]*view{}, alive: map[string]*aliveRec{}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	return t, nil
}

// Start removes this instance's summaries of an earlier run, heartbeats, reads the
// live instances and starts the flusher and the heartbeat. ctx bounds the setup.
func (t *Tracker) Start(ctx context.Context) error {
	t.mu.Lock()
	if t.started || t.closed {
		t.mu.Unlock()
		return errors.New("presence: already started")
	}
	t.started = true
	t.mu.Unlock()
	if err := t.st.Purge(ctx, t.cfg.Instance); err != nil {
		t.log.Warn("presence: purging an earlier run's summaries", "err", err)
	}
	if err := t.st.Heartbeat(ctx, Alive{Instance: t.cfg.Instance, Inc: t.inc}); err != nil {
		return err
	}
	stop, err := t.st.FollowAlive(t.onAlive)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.stopAlive = stop
	t.mu.Unlock()
	t.wg.Add(2)
	go t.flusher()
	go t.heartbeat()
	return nil
}

// Close stops the tracker's goroutines and follows. Its liveness record lapses after
// TTL, and with it its members in every view.
func (t *Tracker) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	stop := t.stopAlive
	for _, a := range t.alive {
		a.timer.Stop()
	}
	for _, lc := range t.local {
		for _, g := range lc.grace {
			g.timer.Stop()
		}
	}
	var stops []func()
	for _, v := range t.views {
		stops = append(stops, v.stop)
	}
	t.views = map[string]*view{}
	t.mu.Unlock()
	t.cancel()
	if stop != nil {
		stop()
	}
	for _, s := range stops {
		s()
	}
	t.wg.Wait()
	return nil
}

// Instance is this tracker's instance name.
func (t *Tracker) Instance() string { return t.cfg.Instance }

// Join counts one more connection of user ("" = anonymous) on channel.
func (t *Tracker) Join(channel, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	lc := t.local[channel]
	if lc == nil {
		lc = newLocalChan()
		t.local[channel] = lc
	}
	lc.conns++
	if user == "" {
		lc.anon++
		t.markLocked(channel, lc, t.cfg.CountDelay)
		return
	}
	if g := lc.grace[user]; g != nil {
		g.timer.Stop() // back within the grace period: still a member, nothing announced
		delete(lc.grace, user)
	}
	n, member := lc.users[user]
	lc.users[user] = n + 1
	if member {
		t.markLocked(channel, lc, t.cfg.CountDelay)
	} else {
		t.markLocked(channel, lc, t.cfg.FlushInterval)
	}
}

// Leave counts one fewer connection of user on channel. The user's last connection
// starts the grace period; the user leaves at its end unless it came back.
func (t *Tracker) Leave(channel, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lc := t.local[channel]
	if t.closed || lc == nil {
		return
	}
	lc.conns = max(lc.conns-1, 0)
	if user == "" {
		lc.anon = max(lc.anon-1, 0)
		t.markLocked(channel, lc, t.cfg.CountDelay)
		return
	}
	n, ok := lc.users[user]
	if !ok {
		return
	}
	if n > 1 {
		lc.users[user] = n - 1
		t.markLocked(channel, lc, t.cfg.CountDelay)
		return
	}
	lc.users[user] = 0
	if g := lc.grace[user]; g != nil {
		g.timer.Stop()
	}
	g := &graceTimer{}
	lc.grace[user] = g
	g.timer = time.AfterFunc(t.cfg.Grace, func() { t.graceOver(channel, user, g) })
	t.markLocked(channel, lc, t.cfg.CountDelay)
}

// graceTimer is one pending leave; its identity tells a stale timer from the current.
type graceTimer struct{ timer *time.Timer }

func (t *Tracker) graceOver(channel, user string, g *graceTimer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lc := t.local[channel]
	if t.closed || lc == nil || lc.grace[user] != g {
		return // came back, or a later leave runs its own timer
	}
	delete(lc.grace, user)
	if lc.users[user] == 0 {
		delete(lc.users, user)
		t.markLocked(channel, lc, t.cfg.FlushInterval)
	}
}

// markLocked schedules channel's summary no earlier than delay after its last write.
func (t *Tracker) markLocked(channel string, lc *localChan, delay time.Duration) {
	due := lc.lastPut.Add(delay)
	if now := time.Now(); due.Before(now) {
		due = now
	}
	if cur, ok := t.dirty[channel]; ok && !cur.After(due) {
		return
	}
	t.dirty[channel] = due
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// summaryLocked builds channel's summary (a new version). The listing keeps the users
// of the previous one while they stay, then fills up with others to MaxMembers.
func (t *Tracker) summaryLocked(channel string, lc *localChan) *Summary {
	t.ver++
	s := &Summary{Channel: channel, Instance: t.cfg.Instance, Inc: t.inc, V: t.ver,
		Users: len(lc.users), Conns: lc.conns, Anonymous: lc.anon}
	if len(lc.users) > 0 {
		s.Members = make(map[string]int, min(len(lc.users), t.cfg.MaxMembers))
	}
	for u := range lc.listed {
		if n, ok := lc.users[u]; ok {
			s.Members[u] = n
		} else {
			delete(lc.listed, u)
		}
	}
	if len(s.Members) < len(lc.users) && len(s.Members) < t.cfg.MaxMembers {
		var rest []string
		for u := range lc.users {
			if _, ok := s.Members[u]; !ok {
				rest = append(rest, u)
			}
		}
		slices.Sort(rest)
		for _, u := range rest[:min(len(rest), t.cfg.MaxMembers-len(s.Members))] {
			s.Members[u] = lc.users[u]
			lc.listed[u] = struct{}{}
		}
	}
	return s
}

// flusher writes due summaries, in batches, until Close.
func (t *Tracker) flusher() {
	defer t.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-t.wake:
		case <-timer.C:
		}
		for {
			batch, next := t.due(time.Now())
			if len(batch) > 0 {
				t.put(batch)
			}
			if len(batch) < putBatch {
				timer.Reset(next)
				break
			}
		}
	}
}

// due takes up to putBatch summaries due at now, applies them to this instance's
// views, and says when the next one is due.
func (t *Tracker) due(now time.Time) ([]*Summary, time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var batch []*Summary
	next := time.Hour
	for ch, at := range t.dirty {
		if at.After(now) {
			next = min(next, at.Sub(now))
			continue
		}
		if len(batch) >= putBatch {
			next = 0
			continue
		}
		delete(t.dirty, ch)
		lc := t.local[ch]
		if lc == nil {
			continue
		}
		if lc.empty() && !lc.stored {
			delete(t.local, ch) // never written: nothing to remove
			continue
		}
		s := t.summaryLocked(ch, lc)
		lc.lastPut, lc.v, lc.stored = now, s.V, !s.Empty()
		if lc.empty() {
			delete(t.local, ch)
		}
		batch = append(batch, s)
		if v := t.views[ch]; v != nil {
			t.applyLocked(v, s)
		}
	}
	return batch, next
}

// put writes a batch; on failure its channels are written again after retryDelay.
func (t *Tracker) put(batch []*Summary) {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.Timeout)
	err := t.st.Put(ctx, batch)
	cancel()
	if err == nil {
		t.writes.Add(uint64(len(batch)))
		return
	}
	if t.ctx.Err() != nil {
		return
	}
	t.writeErrors.Add(uint64(len(batch)))
	t.log.Warn("presence: writing summaries failed, retrying", "summaries", len(batch), "err", err)
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range batch {
		lc := t.local[s.Channel]
		if lc == nil {
			// Emptied and forgotten: its removal must still reach the store.
			lc = newLocalChan()
			lc.stored = true
			t.local[s.Channel] = lc
		}
		lc.stored = true
		t.dirty[s.Channel] = time.Now().Add(retryDelay)
	}
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// heartbeat renews this instance's liveness record every TTL/3 and rewrites every
// summary after a failed heartbeat (the others may have purged them), after the
// store's connection was lost (a store with Reconnects), and every RefreshEvery.
func (t *Tracker) heartbeat() {
	defer t.wg.Done()
	tick := time.NewTicker(t.cfg.TTL / 3)
	defer tick.Stop()
	lastAll := time.Now()
	failed := false
	lost, _ := t.st.(interface{ Reconnects() uint64 })
	var reconnects uint64
	if lost != nil {
		reconnects = lost.Reconnects()
	}
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(t.ctx, t.cfg.Timeout)
		err := t.st.Heartbeat(ctx, Alive{Instance: t.cfg.Instance, Inc: t.inc})
		cancel()
		if err != nil {
			if t.ctx.Err() == nil {
				t.log.Warn("presence: heartbeat failed", "err", err)
			}
			failed = true
			continue
		}
		if lost != nil {
			// The store's connection was lost (maybe with the store itself: a NATS
			// restart loses memory-backed buckets): write everything again.
			if r := lost.Reconnects(); r != reconnects {
				reconnects, failed = r, true
			}
		}
		if failed || time.Since(lastAll) >= t.cfg.RefreshEvery {
			failed, lastAll = false, time.Now()
			t.rewriteAll()
		}
	}
}

// rewriteAll schedules every summary of this instance.
func (t *Tracker) rewriteAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for ch, lc := range t.local {
		if lc.stored || !lc.empty() {
			t.dirty[ch] = now
		}
	}
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// onAlive is the store's liveness callback: a heartbeat of an instance (maybe a new
// incarnation of one).
func (t *Tracker) onAlive(a Alive) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || a.Instance == t.cfg.Instance {
		return
	}
	rec := t.alive[a.Instance]
	if rec != nil && rec.inc == a.Inc {
		rec.timer.Reset(t.cfg.TTL)
		return
	}
	if rec != nil {
		// Restarted: the old incarnation's members are gone.
		rec.timer.Stop()
		t.dropInstanceLocked(a.Instance)
	}
	inst, inc := a.Instance, a.Inc
	rec = &aliveRec{inc: inc}
	rec.timer = time.AfterFunc(t.cfg.TTL, func() { t.lapse(inst, inc) })
	t.alive[inst] = rec
	for _, v := range t.views {
		if s := v.early[inst]; s != nil {
			delete(v.early, inst)
			if s.Inc == inc {
				t.applyLocked(v, s)
			}
		}
	}
}

// lapse runs when an instance missed its heartbeats for TTL: its members leave every
// view, and the lowest-named live instance purges its summaries.
func (t *Tracker) lapse(inst, inc string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	rec := t.alive[inst]
	if t.closed || rec == nil || rec.inc != inc {
		return
	}
	delete(t.alive, inst)
	t.dropInstanceLocked(inst)
	janitor := true
	for other := range t.alive {
		if other < t.cfg.Instance {
			janitor = false
		}
	}
	if janitor {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			ctx, cancel := context.WithTimeout(t.ctx, t.cfg.Timeout)
			defer cancel()
			if err := t.st.Purge(ctx, inst); err != nil && t.ctx.Err() == nil {
				t.log.Warn("presence: purging a dead instance's summaries", "instance", inst, "err", err)
				return
			}
			t.purges.Add(1)
		}()
	}
}

// dropInstanceLocked removes inst's summaries from every view.
func (t *Tracker) dropInstanceLocked(inst string) {
	for _, v := range t.views {
		delete(v.early, inst)
		t.replaceLocked(v, inst, nil)
	}
}

// isAliveLocked reports whether inst's incarnation inc is live.
func (t *Tracker) isAliveLocked(inst, inc string) bool {
	if inst == t.cfg.Instance {
		return inc == t.inc
	}
	rec := t.alive[inst]
	return rec != nil && rec.inc == inc
}

// Stats are a tracker's figures.
type Stats struct {
	Instance string
	// Channels with members on this instance, the memberships (channel, user) and the
	// connections behind them.
	Channels, Members, Conns int
	// Followed channels (whose events some connection of this instance asked for).
	Followed int
	// Instances alive, this one included, sorted.
	Instances []string
	// Summaries written, writes that failed, diffs delivered, dead instances purged.
	Writes, WriteErrors, Diffs, Purges uint64
	// Top is this instance's busiest channels, most members first (at most 10).
	Top []ChannelCount
}

// ChannelCount is one channel's members on this instance.
type ChannelCount struct {
	Channel string
	Users   int
	Conns   int
}

// Stats returns the tracker's figures.
func (t *Tracker) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{Instance: t.cfg.Instance, Followed: len(t.views), Instances: []string{t.cfg.Instance},
		Writes: t.writes.Load(), WriteErrors: t.writeErrors.Load(), Diffs: t.diffs.Load(), Purges: t.purges.Load()}
	for ch, lc := range t.local {
		if lc.empty() {
			continue
		}
		s.Channels++
		s.Members += len(lc.users)
		s.Conns += lc.conns
		s.Top = append(s.Top, ChannelCount{Channel: ch, Users: len(lc.users), Conns: lc.conns})
	}
	slices.SortFunc(s.Top, func(a, b ChannelCount) int {
		if a.Users != b.Users {
			return b.Users - a.Users
		}
		if a.Conns != b.Conns {
			return b.Conns - a.Conns
		}
		if a.Channel < b.Channel {
			return -1
		}
		return 1
	})
	s.Top = s.Top[:min(len(s.Top), 10)]
	for inst := range t.alive {
		s.Instances = append(s.Instances, inst)
	}
	slices.Sort(s.Instances)
	return s
}
