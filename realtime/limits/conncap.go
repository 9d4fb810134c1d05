package limits

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrCapReached is returned by ConnCap.Acquire when the user holds Max connections.
var ErrCapReached = errors.New("connection cap reached")

// ConnCapConfig configures NewConnCap. Zero values take the defaults.
type ConnCapConfig struct {
	// Max concurrent connections per user across every instance sharing the NATS
	// (default 10).
	Max int
	// Bucket is the key-value bucket (default "realtime-conns").
	Bucket string
	// TTL: an entry not refreshed for this long expires (default 30s), so the
	// connections of a dead instance stop counting after at most TTL. Heartbeat is the
	// refresh period of an instance's entries (default TTL/3).
	TTL       time.Duration
	Heartbeat time.Duration
	// Timeout bounds each key-value call of Acquire and release (default 1s).
	Timeout time.Duration
	// Instance names this process in the entries (for operators reading the bucket).
	Instance string
	Logger   *slog.Logger
}

// ConnCap caps the concurrent connections of each user across the cluster. Every open
// connection is one key "<sha256(user)[:12]>.<random>" in a NATS key-value bucket whose
// entries expire after TTL unless refreshed; each instance refreshes its own entries
// every Heartbeat, so a dead instance's entries vanish by themselves.
//
// Acquire creates the connection's key, then counts the user's keys: the connection is
// admitted when fewer than Max of them were created before it (ordering by the bucket's
// revision, which every instance sees the same). Two racing connects cannot both take
// the last place: the later one always sees the earlier one. A refused connection's key
// is deleted at once. Policy: the 11th connection is refused; existing ones are never
// closed to make room.
//
// The count comes from a view of the whole bucket that one watcher per instance keeps
// (every instance's keys, updated in revision order): Acquire creates its key (one
// round trip) and waits until the watcher has applied that revision, so the view then
// holds every key created before it, and counts them locally. A user already at Max in
// the view is refused without any round trip. Listing the user's keys with a watch of
// its own per connect created and deleted a JetStream consumer each time, which scanned
// the bucket: a connect cost O(open connections), 5,000 connects took 14 s.
//
// When NATS cannot be reached Acquire admits the connection (fail open: the bus is down
// anyway and the per-IP and per-user connect rates still apply) and counts it in
// Unavailable; the heartbeat registers it once NATS is back.
//
// Safe for concurrent use. Close stops the heartbeat (entries then expire after TTL).
type ConnCap struct {
	// immutable
	cfg ConnCapConfig
	kv  jetstream.KeyValue
	log *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the heartbeat goroutine

	mu   sync.Mutex
	held map[string]*heldKey // keys of this instance's open connections

	// the bucket's view (watch), guarded by viewMu
	viewMu   sync.Mutex
	view     map[string][]keyEntry // user prefix -> its keys (a few each)
	applied  uint64                // highest revision applied to view
	advanced chan struct{}         // closed (and replaced) when applied grows
	watching bool                  // the watcher runs and loaded the bucket

	unavailable atomic.Uint64
	refused     atomic.Uint64
}

type heldKey struct {
	first uint64 // revision of the creation (the connection's place in line)
	last  uint64 // revision of the last write, for compare-and-set refreshes
}

// capEntry is the stored value.
type capEntry struct {
	Instance string `json:"i,omitempty"`
	First    uint64 `json:"r,omitempty"` // creation revision, kept across refreshes
	Since    int64  `json:"t,omitempty"` // unix ms of the connect
}

// NewConnCap creates (or updates) the bucket and starts the heartbeat.
func NewConnCap(ctx context.Context, js jetstream.JetStream, cfg ConnCapConfig) (*ConnCap, error) {
	if cfg.Max <= 0 {
		cfg.Max = 10
	}
	if cfg.Bucket == "" {
		cfg.Bucket = "realtime-conns"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = cfg.TTL / 3
	}
	if cfg.Heartbeat >= cfg.TTL {
		return nil, errors.New("limits: conn cap: Heartbeat must be below TTL")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: cfg.Bucket, Description: "realtime: open stream connections per user",
		History: 1, TTL: cfg.TTL, Storage: jetstream.MemoryStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("limits: conn cap bucket %s: %w", cfg.Bucket, err)
	}
	c := &ConnCap{cfg: cfg, kv: kv, log: cfg.Logger.With("component", "conncap"), held: map[string]*heldKey{},
		view: map[string][]keyEntry{}, advanced: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(2)
	go c.heartbeat()
	go c.watch()
	return c, nil
}

// watch keeps the view of the bucket until Close, starting over after a failure.
func (c *ConnCap) watch() {
	defer c.wg.Done()
	for c.ctx.Err() == nil {
		w, err := c.kv.WatchAll(c.ctx)
		if err != nil {
			c.log.Debug("conn cap: watch", "err", err)
			if !sleepCtx(c.ctx, time.Second) {
				return
			}
			continue
		}
		c.follow(w)
		_ = w.Stop()
		c.viewMu.Lock()
		c.watching = false
		c.viewMu.Unlock()
		if !sleepCtx(c.ctx, 100*time.Millisecond) {
			return
		}
	}
}

// follow applies w's updates to the view until w ends. The first ones (up to the nil
// marker) are the bucket's content: the view is rebuilt from them.
func (c *ConnCap) follow(w jetstream.KeyWatcher) {
	fresh := map[string][]keyEntry{}
	loading := true
	var loaded uint64
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-c.ctx.Done():
			return
		case e, ok = <-w.Updates():
			if !ok {
				return
			}
		}
		if e == nil { // the end of the initial values
			c.viewMu.Lock()
			c.view, c.watching, loading = fresh, true, false
			c.advanceLocked(loaded)
			c.viewMu.Unlock()
			continue
		}
		prefix, _, _ := strings.Cut(e.Key(), ".")
		if loading {
			applyEntry(fresh, prefix, e)
			loaded = max(loaded, e.Revision())
			continue
		}
		c.viewMu.Lock()
		applyEntry(c.view, prefix, e)
		c.advanceLocked(e.Revision())
		c.viewMu.Unlock()
	}
}

// viewEntry is one open connection in the view. The bucket expires an entry TTL after
// its last write without telling watchers, so the view does the same with written.
type viewEntry struct {
	first   uint64    // creation revision (its place in line)
	written time.Time // last write (the instance refreshes it every Heartbeat)
}

func applyEntry(view map[string][]keyEntry, prefix string, e jetstream.KeyValueEntry) {
	keys := view[prefix]
	i := slices.IndexFunc(keys, func(k keyEntry) bool { return k.key == e.Key() })
	if e.Operation() != jetstream.KeyValuePut {
		if i >= 0 {
			keys = slices.Delete(keys, i, i+1)
			if len(keys) == 0 {
				delete(view, prefix)
			} else {
				view[prefix] = keys
			}
		}
		return
	}
	written := e.Created()
	if now := time.Now(); written.After(now) || written.IsZero() {
		written = now // a server clock ahead of ours: count from now
	}
	ve := viewEntry{first: firstRevision(e), written: written}
	if i >= 0 {
		keys[i].viewEntry = ve
		return
	}
	// A copy of the key: the entry's own points into the message it came in.
	view[prefix] = append(keys, keyEntry{key: strings.Clone(e.Key()), viewEntry: ve})
}

func (c *ConnCap) advanceLocked(rev uint64) {
	if rev > c.applied {
		c.applied = rev
	}
	close(c.advanced)
	c.advanced = make(chan struct{})
}

// waitApplied waits until the view holds revision rev (the watcher loaded the bucket
// and applied every revision up to rev); false when ctx ends first.
func (c *ConnCap) waitApplied(ctx context.Context, rev uint64) bool {
	for {
		c.viewMu.Lock()
		if c.watching && c.applied >= rev {
			c.viewMu.Unlock()
			return true
		}
		ch := c.advanced
		c.viewMu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// countBefore counts the user's live keys other than key created before rev.
func (c *ConnCap) countBefore(prefix, key string, rev uint64) int {
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	n := 0
	for _, e := range c.liveLocked(prefix) {
		if e.key != key && e.first < rev {
			n++
		}
	}
	return n
}

// viewCount is the user's live keys in the view, and whether the view is live.
func (c *ConnCap) viewCount(prefix string) (int, bool) {
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	return len(c.liveLocked(prefix)), c.watching
}

type keyEntry struct {
	key string
	viewEntry
}

// sweepView forgets every entry the bucket has expired (heartbeat goroutine): the view
// holds only live connections.
func (c *ConnCap) sweepView() {
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	for prefix := range c.view {
		c.liveLocked(prefix)
	}
}

// liveLocked returns the user's keys written within TTL, and forgets the others (the
// bucket has expired them). The result is the view's own slice: read it under viewMu.
func (c *ConnCap) liveLocked(prefix string) []keyEntry {
	keys := c.view[prefix]
	limit := time.Now().Add(-c.cfg.TTL)
	live := slices.DeleteFunc(keys, func(k keyEntry) bool { return k.written.Before(limit) })
	switch {
	case len(live) == 0:
		delete(c.view, prefix)
	case len(live) != len(keys):
		c.view[prefix] = live
	}
	return live
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Max is the configured cap.
func (c *ConnCap) Max() int { return c.cfg.Max }

// Unavailable counts connections admitted without a check because NATS failed.
func (c *ConnCap) Unavailable() uint64 { return c.unavailable.Load() }

// Refused counts connections refused by the cap.
func (c *ConnCap) Refused() uint64 { return c.refused.Load() }

// Held is the number of this instance's connections registered in the cap.
func (c *ConnCap) Held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.held)
}

// Acquire registers one connection of user. It returns ErrCapReached when the user
// already holds Max connections (count is what it saw), otherwise a release to call
// exactly once when the connection ends.
func (c *ConnCap) Acquire(ctx context.Context, user string) (release func(), count int, err error) {
	prefix := userKey(user)
	if n, live := c.viewCount(prefix); live && n >= c.cfg.Max {
		c.refused.Add(1) // already full: no need to ask
		return nil, n, ErrCapReached
	}
	key := prefix + "." + randomHex(8)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	val, _ := json.Marshal(capEntry{Instance: c.cfg.Instance, Since: time.Now().UnixMilli()})
	rev, err := c.kv.Create(ctx, key, val)
	if err != nil {
		return c.failOpen(key, "create", err), 0, nil
	}
	if !c.waitApplied(ctx, rev) {
		// The key is in the bucket (others count it); only this check failed.
		n := c.unavailable.Add(1)
		c.log.Warn("connection cap view unavailable, admitting without a check", "err", ctx.Err(), "unavailable_total", n)
		c.mu.Lock()
		c.held[key] = &heldKey{first: rev, last: rev}
		c.mu.Unlock()
		return c.releaseFunc(key), 0, nil
	}
	before := c.countBefore(prefix, key, rev)
	if before >= c.cfg.Max {
		c.deleteKey(key)
		c.refused.Add(1)
		return nil, before, ErrCapReached
	}
	c.mu.Lock()
	c.held[key] = &heldKey{first: rev, last: rev}
	c.mu.Unlock()
	return c.releaseFunc(key), before + 1, nil
}

func (c *ConnCap) failOpen(key, op string, err error) func() {
	n := c.unavailable.Add(1)
	c.log.Warn("connection cap unavailable, admitting without a check", "op", op, "err", err, "unavailable_total", n)
	c.mu.Lock()
	c.held[key] = &heldKey{} // the heartbeat registers it when NATS is back
	c.mu.Unlock()
	return c.releaseFunc(key)
}

func (c *ConnCap) releaseFunc(key string) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			delete(c.held, key)
			c.mu.Unlock()
			c.deleteKey(key)
		})
	}
}

func (c *ConnCap) deleteKey(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	if err := c.kv.Delete(ctx, key); err != nil {
		c.log.Debug("conn cap: delete", "key", key, "err", err) // expires after TTL anyway
	}
}

// heartbeat refreshes this instance's keys with compare-and-set, so a key released
// meanwhile is never written back; a key that expired (NATS was down longer than TTL)
// is created again, keeping its place in line.
func (c *ConnCap) heartbeat() {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.sweepView()
		c.mu.Lock()
		keys := make(map[string]heldKey, len(c.held))
		for k, h := range c.held {
			keys[k] = *h
		}
		c.mu.Unlock()
		for key, h := range keys {
			if c.ctx.Err() != nil {
				return
			}
			c.refresh(key, h)
		}
	}
}

func (c *ConnCap) refresh(key string, h heldKey) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.Timeout)
	defer cancel()
	val, _ := json.Marshal(capEntry{Instance: c.cfg.Instance, First: h.first})
	var rev uint64
	var err error
	if h.last > 0 {
		rev, err = c.kv.Update(ctx, key, val, h.last)
	}
	if h.last == 0 || errors.Is(err, jetstream.ErrKeyNotFound) || isWrongRevision(err) {
		c.mu.Lock()
		_, still := c.held[key]
		c.mu.Unlock()
		if !still {
			return // released meanwhile
		}
		rev, err = c.kv.Create(ctx, key, val)
	}
	if err != nil {
		c.log.Debug("conn cap: refresh", "key", key, "err", err)
		return
	}
	c.mu.Lock()
	if hk, ok := c.held[key]; ok {
		hk.last = rev
		if hk.first == 0 {
			hk.first = rev
		}
	} else {
		c.mu.Unlock()
		c.deleteKey(key) // released while we wrote it
		return
	}
	c.mu.Unlock()
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Close stops the heartbeat and waits for it. Held keys are left to expire.
func (c *ConnCap) Close() {
	c.cancel()
	c.wg.Wait()
}

func firstRevision(e jetstream.KeyValueEntry) uint64 {
	var v capEntry
	if json.Unmarshal(e.Value(), &v) == nil && v.First > 0 {
		return v.First
	}
	return e.Revision()
}

func userKey(user string) string {
	h := sha256.Sum256([]byte(user))
	return "u" + hex.EncodeToString(h[:12])
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
