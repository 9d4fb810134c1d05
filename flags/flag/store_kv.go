package flag

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Options configures a KVStore. The zero value is usable.
type Options struct {
	Bucket       string       // KV bucket of flag records; default "flags"
	AuditStream  string       // stream of audit entries; default "FLAGS_AUDIT"
	AuditSubject string       // its subject; default "flags.audit"
	AuditMax     int64        // audit entries kept (oldest dropped); default 1000
	AuditBytes   int64        // audit bytes kept; default 64 MiB
	Replicas     int          // replicas of both (clustered NATS); default 1
	Defaults     []Flag       // built-in flags; nil means Builtins()
	Logger       *slog.Logger // default slog.Default()
	Now          func() time.Time
	// WriteTimeout bounds how long Change waits for the store's own watcher to show a
	// written change; default 5 s.
	WriteTimeout time.Duration
	// ResyncCheck is how often the watch goroutine checks the connection for a
	// reconnect (after which it reloads the bucket and restarts the watch, instead of
	// waiting ~10 s for nats.go to notice a lost consumer); default 250 ms.
	ResyncCheck time.Duration
}

// DefaultBucket is the bucket of flag records of both stores (a NATS key-value bucket,
// rows of realtime_flags).
const DefaultBucket = "flags"

// Bucket limits.
const (
	kvHistory      = 16        // revisions kept per flag in the bucket
	kvMaxValueSize = 256 << 10 // one flag record
	changeAttempts = 8         // compare-and-set retries under concurrent writers
)

// KVStore stores flags in a JetStream key-value bucket and keeps an in-memory snapshot
// in sync by watching it. Safe for concurrent use. Close it to stop its goroutine.
type KVStore struct {
	*hub

	// immutable after Open
	js           jetstream.JetStream
	kv           jetstream.KeyValue
	auditStream  string
	auditSubject string
	defaults     map[string]Flag
	log          *slog.Logger
	now          func() time.Time
	writeTimeout time.Duration

	resyncCheck time.Duration

	// owned by Open, then by the watch goroutine
	stored  map[string]Flag
	watcher *kvWatch

	applied atomic.Uint64 // highest bucket revision the watcher has processed
	watched               // counters (Resyncs: watches restarted after a reconnect), Close
}

// kvWatch is one KV watcher and the context nats.go keeps a goroutine waiting on
// (per subscription and resubscription), so it must be cancelled after Stop.
type kvWatch struct {
	w      jetstream.KeyWatcher
	cancel context.CancelFunc
}

// stop unsubscribes, drains the updates channel until nats.go closes it (its callback
// blocks on a full channel) and cancels the context.
func (w *kvWatch) stop() {
	_ = w.w.Stop()
	for range w.w.Updates() {
	}
	w.cancel()
}

// Open creates (or updates) the bucket and the audit stream, loads every stored flag,
// and starts watching. When it returns, Evaluator() reflects the bucket's content.
// ctx bounds the setup only.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*KVStore, error) {
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if o.AuditStream == "" {
		o.AuditStream = "FLAGS_AUDIT"
	}
	if o.AuditSubject == "" {
		o.AuditSubject = "flags.audit"
	}
	if o.AuditMax <= 0 {
		o.AuditMax = 1000
	}
	if o.AuditBytes <= 0 {
		o.AuditBytes = 64 << 20
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 5 * time.Second
	}
	if o.ResyncCheck <= 0 {
		o.ResyncCheck = 250 * time.Millisecond
	}
	defaults, err := defaultsMap(o.Defaults)
	if err != nil {
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:       o.Bucket,
		Description:  "feature flags (encore.app/flags/flag)",
		History:      kvHistory,
		MaxValueSize: kvMaxValueSize,
		Storage:      jetstream.FileStorage,
		Replicas:     o.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("flags bucket %s: %w", o.Bucket, err)
	}
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        o.AuditStream,
		Description: "feature flag changes (encore.app/flags/flag)",
		Subjects:    []string{o.AuditSubject},
		MaxMsgs:     o.AuditMax,
		MaxBytes:    o.AuditBytes,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		AllowDirect: true,
	})
	if err != nil {
		return nil, fmt.Errorf("flags audit stream %s: %w", o.AuditStream, err)
	}
	s := &KVStore{
		hub:          newHub(merge(defaults, nil)),
		js:           js,
		kv:           kv,
		auditStream:  o.AuditStream,
		auditSubject: o.AuditSubject,
		defaults:     defaults,
		log:          o.Logger,
		now:          o.Now,
		writeTimeout: o.WriteTimeout,
		resyncCheck:  o.ResyncCheck,
		watched:      newWatched(),
	}
	w, stored, rev, err := s.load(ctx)
	if err != nil {
		return nil, fmt.Errorf("load flags bucket %s: %w", o.Bucket, err)
	}
	s.watcher, s.stored = w, stored
	s.applied.Store(rev)
	s.hub.publish(merge(s.defaults, s.stored))
	go s.watch()
	return s, nil
}

// load starts a watcher and reads every current record (up to the watcher's nil
// marker) into a new map; it returns the watcher, still running, for the updates that
// follow. ctx bounds the loading only: the watcher lives until stopped.
func (s *KVStore) load(ctx context.Context) (*kvWatch, map[string]Flag, uint64, error) {
	wctx, cancel := context.WithCancel(context.Background())
	kw, err := s.kv.WatchAll(wctx)
	if err != nil {
		cancel()
		return nil, nil, 0, err
	}
	w := &kvWatch{w: kw, cancel: cancel}
	stored := make(map[string]Flag)
	var rev uint64
	for {
		select {
		case e, ok := <-kw.Updates():
			if !ok {
				cancel()
				return nil, nil, 0, errors.New("watch closed while loading")
			}
			if e == nil {
				return w, stored, rev, nil
			}
			s.applyEntry(stored, e)
			rev = max(rev, e.Revision())
		case <-ctx.Done():
			w.stop()
			return nil, nil, 0, ctx.Err()
		}
	}
}

// watch applies every update to the snapshot until Close. It owns s.watcher and
// s.stored. After the connection reconnects (the server may have lost the watch's
// consumer) or the watch ends on its own, it reloads the bucket with a new watcher.
func (s *KVStore) watch() {
	defer close(s.done)
	defer func() { s.watcher.stop() }()
	nc := s.js.Conn()
	reconnects := nc.Stats().Reconnects
	tick := time.NewTicker(s.resyncCheck)
	defer tick.Stop()
	updates := s.watcher.w.Updates()
	for {
		select {
		case <-s.closing:
			return
		case e, ok := <-updates:
			if !ok {
				updates = nil // resync on a later tick, if the connection lives
				if nc.IsClosed() {
					s.log.Warn("flags: NATS connection closed; snapshot frozen until Close")
				}
				continue
			}
			if e == nil {
				continue
			}
			s.handle(e)
		case <-tick.C:
			r := nc.Stats().Reconnects
			if (r == reconnects && updates != nil) || !nc.IsConnected() {
				continue
			}
			if err := s.resync(); err != nil {
				s.log.Warn("flags: reloading the bucket after a reconnect failed; retrying", "err", err)
				continue
			}
			reconnects, updates = r, s.watcher.w.Updates()
		}
	}
}

// handle applies one live update and publishes the new snapshot.
func (s *KVStore) handle(e jetstream.KeyValueEntry) {
	if !s.applyEntry(s.stored, e) {
		s.applied.Store(max(s.applied.Load(), e.Revision()))
		s.hub.wakeWaiters()
		return
	}
	// Snapshot first, then applied, then wake: a Change waiting for this revision
	// must find the snapshot already updated.
	snap := merge(s.defaults, s.stored)
	s.hub.snap.Store(snap)
	s.applied.Store(max(s.applied.Load(), e.Revision()))
	s.hub.publish(snap)
}

// resync replaces the watcher and the stored map with a fresh load of the bucket.
func (s *KVStore) resync() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.writeTimeout)
	defer cancel()
	w, stored, rev, err := s.load(ctx)
	if err != nil {
		return err
	}
	s.watcher.stop()
	s.watcher, s.stored = w, stored
	s.resyncs.Add(1)
	snap := merge(s.defaults, s.stored)
	s.hub.snap.Store(snap)
	s.applied.Store(max(s.applied.Load(), rev))
	s.hub.publish(snap)
	s.log.Info("flags: bucket reloaded after reconnect", "flags", len(stored), "revision", rev)
	return nil
}

// applyEntry updates stored from one KV entry; it reports whether anything changed.
func (s *KVStore) applyEntry(stored map[string]Flag, e jetstream.KeyValueEntry) bool {
	name := e.Key()
	switch e.Operation() {
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		_, had := stored[name]
		delete(stored, name)
		s.log.Info("flag reset to default", "flag", name, "revision", e.Revision())
		return had
	}
	f, err := decodeRecord(name, e.Value())
	if err != nil {
		s.invalid.Add(1)
		s.log.Error("ignoring invalid flag record", "flag", name, "revision", e.Revision(), "err", err)
		return false
	}
	f.Revision = e.Revision()
	stored[name] = f
	return true
}

// decodeRecord parses and validates a stored record under key name.
func decodeRecord(name string, data []byte) (Flag, error) {
	var f Flag
	if err := json.Unmarshal(data, &f); err != nil {
		return Flag{}, fmt.Errorf("%w: record is not a JSON flag: %v", ErrInvalid, err)
	}
	if f.Name != name {
		return Flag{}, fmt.Errorf("%w: record names flag %q under key %q", ErrInvalid, clip(f.Name), name)
	}
	if err := f.Validate(); err != nil {
		return Flag{}, err
	}
	return f, nil
}

// Change implements Store. It reads the current record, applies c and writes it back
// with compare-and-set, retrying when another writer got in between (unless
// c.IfRevision pins the revision).
func (s *KVStore) Change(ctx context.Context, name string, c Change, actor string) (Flag, error) {
	if err := ValidateName(name); err != nil {
		return Flag{}, err
	}
	if s.isClosed() {
		return Flag{}, ErrClosed
	}
	for attempt := 0; ; attempt++ {
		cur, exists, deleted, err := s.current(ctx, name)
		if err != nil {
			return Flag{}, err
		}
		next, err := c.apply(cur, exists, actor, s.now())
		if err != nil {
			return Flag{}, err
		}
		data, err := json.Marshal(&next)
		if err != nil {
			return Flag{}, fmt.Errorf("encode flag %s: %w", name, err)
		}
		var rev uint64
		if cur.Revision == 0 || deleted {
			rev, err = s.kv.Create(ctx, name, data)
		} else {
			rev, err = s.kv.Update(ctx, name, data, cur.Revision)
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			if c.IfRevision != nil {
				return Flag{}, fmt.Errorf("%w: flag %s changed concurrently", ErrConflict, name)
			}
			if attempt+1 < changeAttempts {
				continue
			}
			return Flag{}, fmt.Errorf("%w: flag %s: %d concurrent writers won in a row", ErrConflict, name, changeAttempts)
		}
		if err != nil {
			return Flag{}, fmt.Errorf("write flag %s: %w", name, err)
		}
		next.Revision = rev
		s.recordAudit(ctx, AuditEntry{Actor: actor, Flag: name, Reason: c.Reason, Before: beforeOf(cur, exists), After: next})
		wctx, cancel := context.WithTimeout(ctx, s.writeTimeout)
		defer cancel()
		// Bucket revisions are stream sequences, increasing across keys.
		if err := s.hub.waitFor(wctx, func() bool { return s.applied.Load() >= rev }); err != nil {
			// Written and durable; only this instance's view lags.
			s.log.Warn("flag written but not yet seen by the watcher", "flag", name, "revision", rev, "err", err)
		}
		return next.clone(), nil
	}
}

func beforeOf(cur Flag, exists bool) *Flag {
	if !exists {
		return nil
	}
	b := cur.clone()
	return &b
}

// current returns the flag's current definition: the stored record, else the
// built-in default, else a new flag. deleted reports a delete marker in the bucket.
func (s *KVStore) current(ctx context.Context, name string) (f Flag, exists, deleted bool, err error) {
	e, err := s.kv.Get(ctx, name)
	switch {
	case err == nil:
		f, err := decodeRecord(name, e.Value())
		if err != nil {
			// A corrupt record is replaced by the change, based on the default.
			s.log.Error("overwriting invalid flag record", "flag", name, "revision", e.Revision(), "err", err)
			d, ok := s.defaults[name]
			d.Name, d.Revision = name, e.Revision()
			return d, ok, false, nil
		}
		f.Revision = e.Revision()
		return f, true, false, nil
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		d, ok := s.defaults[name]
		d.Name = name
		return d, ok, errors.Is(err, jetstream.ErrKeyDeleted), nil
	default:
		return Flag{}, false, false, fmt.Errorf("read flag %s: %w", name, err)
	}
}

// recordAudit appends e to the audit stream and logs it. A failed append is logged
// and counted, not returned: the change is already durable in the bucket, whose
// record carries who and when.
func (s *KVStore) recordAudit(ctx context.Context, e AuditEntry) {
	e.Time = e.After.UpdatedAt
	logChange(s.log, e)
	data, err := json.Marshal(&e)
	if err == nil {
		_, err = s.js.Publish(ctx, s.auditSubject, data)
	}
	if err != nil {
		s.auditErrs.Add(1)
		s.log.Error("flag audit append failed", "flag", e.Flag, "actor", e.Actor, "err", err)
	}
}

// Audit implements Store: the newest limit entries of the audit stream, newest first.
func (s *KVStore) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	limit = clampAuditLimit(limit)
	st, err := s.js.Stream(ctx, s.auditStream)
	if err != nil {
		return nil, fmt.Errorf("audit stream: %w", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit stream: %w", err)
	}
	first, last := info.State.FirstSeq, info.State.LastSeq
	out := make([]AuditEntry, 0, min(uint64(limit), info.State.Msgs))
	for seq := last; seq >= first && seq > 0 && len(out) < limit; seq-- {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // removed by the limits meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("audit entry %d: %w", seq, err)
		}
		var e AuditEntry
		if err := json.Unmarshal(m.Data, &e); err != nil {
			s.log.Error("skipping unreadable audit entry", "seq", seq, "err", err)
			continue
		}
		e.Seq = seq
		out = append(out, e)
	}
	return out, nil
}

// KVStats are the store's counters, cumulative since Open.
type KVStats struct {
	InvalidRecords uint64 // stored records ignored because they did not decode or validate
	AuditErrors    uint64 // audit appends that failed (the changes were applied)
	Resyncs        uint64 // bucket reloads after a reconnect
}

// Stats returns the store's counters.
func (s *KVStore) Stats() KVStats { return s.stats() }

// Close implements Store: it stops the watcher, waits for the watch goroutine and
// closes every subscription. The JetStream connection is the caller's.
func (s *KVStore) Close() error {
	s.stop(s.hub.close)
	return nil
}
