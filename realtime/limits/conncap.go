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
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultConnCapBucket is the cap's bucket (NATS key-value bucket, rows of realtime_conns).
const DefaultConnCapBucket = "realtime-conns"

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
// When NATS cannot be reached Acquire admits the connection (fail open: the bus is down
// anyway and the per-IP and per-user connect rates still apply) and counts it in
// Unavailable; the heartbeat registers it once NATS is back.
//
// Safe for concurrent use. Close stops the heartbeat (entries then expire after TTL).
type ConnCap struct {
	// immutable
	cfg   ConnCapConfig
	store capStore
	log   *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the heartbeat goroutine

	mu   sync.Mutex
	held map[string]*heldKey // keys of this instance's open connections

	unavailable atomic.Uint64
	refused     atomic.Uint64
}

type heldKey struct {
	first     uint64 // revision of the creation (the connection's place in line)
	last      uint64 // revision of the last write, for compare-and-set refreshes
	releasing bool   // release is deleting it: the heartbeat must not write it back
}

// capEntry is the stored value.
type capEntry struct {
	Instance string `json:"i,omitempty"`
	First    uint64 `json:"r,omitempty"` // creation revision, kept across refreshes
	Since    int64  `json:"t,omitempty"` // unix ms of the connect
}

// NewConnCap creates (or updates) the bucket and starts the heartbeat.
func NewConnCap(ctx context.Context, js jetstream.JetStream, cfg ConnCapConfig) (*ConnCap, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: cfg.Bucket, Description: "realtime: open stream connections per user",
		History: 1, TTL: cfg.TTL, Storage: jetstream.MemoryStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("limits: conn cap bucket %s: %w", cfg.Bucket, err)
	}
	return startConnCap(cfg, &kvCap{kv: kv, view: startKVView(kv, cfg.TTL, cfg.Logger.With("component", "conncap"))}), nil
}

// normalize fills in the defaults.
func (cfg *ConnCapConfig) normalize() error {
	if cfg.Max <= 0 {
		cfg.Max = 10
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultConnCapBucket
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 30 * time.Second
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = cfg.TTL / 3
	}
	if cfg.Heartbeat >= cfg.TTL {
		return errors.New("limits: conn cap: Heartbeat must be below TTL")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return nil
}

func startConnCap(cfg ConnCapConfig, store capStore) *ConnCap {
	c := &ConnCap{cfg: cfg, store: store, log: cfg.Logger.With("component", "conncap"), held: map[string]*heldKey{}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(1)
	go c.heartbeat()
	return c
}

// capStore is where the connections are registered: a NATS key-value bucket (kvCap)
// or a Postgres table (pgCap).
type capStore interface {
	// admit registers key (of the user whose keys start with prefix) unless the user
	// holds max connections already; before is the count of the user's earlier ones.
	// On an error nothing stays registered.
	admit(ctx context.Context, prefix, key string, val capEntry, max int) (before int, h heldKey, ok bool, err error)
	// remove unregisters key.
	remove(ctx context.Context, key string) error
	// refresh re-registers held keys before they expire (creating the expired ones
	// again); held reports whether a key is still held (not released meanwhile). It
	// returns the new state of the keys it wrote.
	refresh(ctx context.Context, keys map[string]heldKey, held func(string) bool, instance string) map[string]heldKey
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
	key := prefix + "." + randomHex(8)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	val := capEntry{Instance: c.cfg.Instance, Since: time.Now().UnixMilli()}
	before, h, ok, err := c.store.admit(ctx, prefix, key, val, c.cfg.Max)
	if err != nil {
		return c.failOpen(key, "admit", err), 0, nil
	}
	if !ok {
		c.refused.Add(1)
		return nil, before, ErrCapReached
	}
	c.mu.Lock()
	c.held[key] = &h
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
			// Marked first, forgotten last: Held counts the key until it is gone
			// from the store, and a heartbeat that wrote it back meanwhile deletes it.
			c.mu.Lock()
			if hk, ok := c.held[key]; ok {
				hk.releasing = true
			}
			c.mu.Unlock()
			c.deleteKey(key)
			c.mu.Lock()
			delete(c.held, key)
			c.mu.Unlock()
		})
	}
}

func (c *ConnCap) deleteKey(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	if err := c.store.remove(ctx, key); err != nil {
		c.log.Debug("conn cap: delete", "key", key, "err", err) // expires after TTL anyway
	}
}

// heartbeat refreshes this instance's keys every Heartbeat (the store writes them
// again, creating the ones that expired while the store was unreachable); a key
// released while it was written is deleted again.
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
		c.mu.Lock()
		keys := make(map[string]heldKey, len(c.held))
		for k, h := range c.held {
			if !h.releasing {
				keys[k] = *h
			}
		}
		c.mu.Unlock()
		if len(keys) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.cfg.Timeout+time.Duration(len(keys))*time.Millisecond)
		written := c.store.refresh(ctx, keys, c.isHeld, c.cfg.Instance)
		cancel()
		for key, h := range written {
			c.mu.Lock()
			hk, ok := c.held[key]
			live := ok && !hk.releasing
			if live {
				hk.first, hk.last = h.first, h.last
			}
			c.mu.Unlock()
			if !live {
				c.deleteKey(key) // released while we wrote it
			}
		}
	}
}

func (c *ConnCap) isHeld(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	hk, ok := c.held[key]
	return ok && !hk.releasing
}

// kvCap registers connections as keys of a NATS key-value bucket whose entries
// expire after TTL. Admission orders by the bucket's revision, which every instance
// sees the same: a connection is admitted when fewer than max of the user's keys were
// created before its own. The count comes from the instance's view of the bucket
// (kvView), not from a listing per connect.
type kvCap struct {
	kv   jetstream.KeyValue
	view *kvView
}

func (k *kvCap) admit(ctx context.Context, prefix, key string, val capEntry, max int) (int, heldKey, bool, error) {
	b, _ := json.Marshal(val)
	rev, err := k.kv.Create(ctx, key, b)
	if err != nil {
		return 0, heldKey{}, false, err
	}
	if !k.view.waitApplied(ctx, rev) {
		k.removeNow(key)
		return 0, heldKey{}, false, fmt.Errorf("view of the bucket: %w", ctx.Err())
	}
	before := k.view.countBefore(prefix, key, rev)
	if before >= max {
		k.removeNow(key)
		return before, heldKey{}, false, nil
	}
	return before, heldKey{first: rev, last: rev}, true, nil
}

func (k *kvCap) close() { k.view.close() }

func (k *kvCap) removeNow(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = k.kv.Delete(ctx, key)
}

func (k *kvCap) remove(ctx context.Context, key string) error { return k.kv.Delete(ctx, key) }

// refresh writes each key with compare-and-set, so a key released meanwhile is never
// written back; a key that expired (NATS was down longer than TTL) is created again,
// keeping its place in line.
func (k *kvCap) refresh(ctx context.Context, keys map[string]heldKey, held func(string) bool, instance string) map[string]heldKey {
	out := make(map[string]heldKey, len(keys))
	for key, h := range keys {
		if ctx.Err() != nil {
			break
		}
		val, _ := json.Marshal(capEntry{Instance: instance, First: h.first})
		var rev uint64
		var err error
		if h.last > 0 {
			rev, err = k.kv.Update(ctx, key, val, h.last)
		}
		if h.last == 0 || errors.Is(err, jetstream.ErrKeyNotFound) || isWrongRevision(err) {
			if !held(key) {
				continue // released meanwhile
			}
			rev, err = k.kv.Create(ctx, key, val)
		}
		if err != nil {
			continue // retried at the next heartbeat; the entry may expire meanwhile
		}
		if h.first == 0 {
			h.first = rev
		}
		h.last = rev
		out[key] = h
	}
	return out
}

func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// Close stops the heartbeat (and the store's own goroutines) and waits for them. Held
// keys are left to expire.
func (c *ConnCap) Close() {
	c.cancel()
	c.wg.Wait()
	if cl, ok := c.store.(interface{ close() }); ok {
		cl.close()
	}
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
