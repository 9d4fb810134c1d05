package limits

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// kvView is one instance's view of the whole conn-cap bucket: every instance's keys,
// kept by one watcher in revision order. kvCap.admit creates its key (one round trip)
// and waits until the watcher has applied that revision, so the view then holds every
// key created before it (and every delete before it: a connection released anywhere
// just before counts no more), and counts them locally. The view alone never refuses:
// it may not have applied a release yet. A watch of its own per connect (listing the user's
// keys) created and deleted a JetStream consumer each time, which scanned the bucket:
// a connect cost O(open connections), 5,000 connects took 14 s.
type kvView struct {
	ttl time.Duration
	log *slog.Logger

	ctx    context.Context // cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the watcher

	mu       sync.Mutex
	view     map[string][]keyEntry // user prefix -> its keys (a few each)
	applied  uint64                // highest revision applied to view
	advanced chan struct{}         // closed (and replaced) when applied grows
	watching bool                  // the watcher runs and loaded the bucket
}

// viewEntry is one open connection in the view. The bucket expires an entry TTL after
// its last write without telling watchers, so the view does the same with written.
type viewEntry struct {
	first   uint64    // creation revision (its place in line)
	written time.Time // last write (the instance refreshes it every Heartbeat)
}

type keyEntry struct {
	key string
	viewEntry
}

func startKVView(kv jetstream.KeyValue, ttl time.Duration, log *slog.Logger) *kvView {
	v := &kvView{ttl: ttl, log: log, view: map[string][]keyEntry{}, advanced: make(chan struct{})}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	v.wg.Add(1)
	go v.watch(kv)
	return v
}

func (v *kvView) close() {
	v.cancel()
	v.wg.Wait()
}

// watch keeps the view of the bucket until close, starting over after a failure.
func (v *kvView) watch(kv jetstream.KeyValue) {
	defer v.wg.Done()
	for v.ctx.Err() == nil {
		w, err := kv.WatchAll(v.ctx)
		if err != nil {
			v.log.Debug("conn cap: watch", "err", err)
			if !sleepCtx(v.ctx, time.Second) {
				return
			}
			continue
		}
		v.follow(w)
		_ = w.Stop()
		v.mu.Lock()
		v.watching = false
		v.mu.Unlock()
		if !sleepCtx(v.ctx, 100*time.Millisecond) {
			return
		}
	}
}

// follow applies w's updates to the view until w ends. The first ones (up to the nil
// marker) are the bucket's content: the view is rebuilt from them. Every TTL/3 it
// forgets the entries the bucket has expired, so the view holds only live connections.
func (v *kvView) follow(w jetstream.KeyWatcher) {
	fresh := map[string][]keyEntry{}
	loading := true
	var loaded uint64
	sweep := time.NewTicker(max(v.ttl/3, time.Second))
	defer sweep.Stop()
	for {
		var e jetstream.KeyValueEntry
		var ok bool
		select {
		case <-v.ctx.Done():
			return
		case <-sweep.C:
			v.sweep()
			continue
		case e, ok = <-w.Updates():
			if !ok {
				return
			}
		}
		if e == nil { // the end of the initial values
			v.mu.Lock()
			v.view, v.watching, loading = fresh, true, false
			v.advanceLocked(loaded)
			v.mu.Unlock()
			continue
		}
		prefix, _, _ := strings.Cut(e.Key(), ".")
		if loading {
			applyEntry(fresh, prefix, e)
			loaded = max(loaded, e.Revision())
			continue
		}
		v.mu.Lock()
		applyEntry(v.view, prefix, e)
		v.advanceLocked(e.Revision())
		v.mu.Unlock()
	}
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

func (v *kvView) advanceLocked(rev uint64) {
	if rev > v.applied {
		v.applied = rev
	}
	close(v.advanced)
	v.advanced = make(chan struct{})
}

// waitApplied waits until the view holds revision rev (the watcher loaded the bucket
// and applied every revision up to rev); false when ctx ends first.
func (v *kvView) waitApplied(ctx context.Context, rev uint64) bool {
	for {
		v.mu.Lock()
		if v.watching && v.applied >= rev {
			v.mu.Unlock()
			return true
		}
		ch := v.advanced
		v.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// countBefore counts the user's live keys other than key created before rev.
func (v *kvView) countBefore(prefix, key string, rev uint64) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, e := range v.liveLocked(prefix) {
		if e.key != key && e.first < rev {
			n++
		}
	}
	return n
}

// sweep forgets every entry the bucket has expired.
func (v *kvView) sweep() {
	v.mu.Lock()
	defer v.mu.Unlock()
	for prefix := range v.view {
		v.liveLocked(prefix)
	}
}

// liveLocked returns the user's keys written within TTL, and forgets the others (the
// bucket has expired them). The result is the view's own slice: read it under mu.
func (v *kvView) liveLocked(prefix string) []keyEntry {
	keys := v.view[prefix]
	limit := time.Now().Add(-v.ttl)
	live := slices.DeleteFunc(keys, func(k keyEntry) bool { return k.written.Before(limit) })
	switch {
	case len(live) == 0:
		delete(v.view, prefix)
	case len(live) != len(keys):
		v.view[prefix] = live
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
