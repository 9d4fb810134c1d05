package flag

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
}

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

	// owned by the watch goroutine
	stored map[string]Flag

	applied   atomic.Uint64 // highest bucket revision the watcher has processed
	invalid   atomic.Uint64 // stored records that failed to decode or validate (ignored)
	auditErrs atomic.Uint64 // audit appends that failed (the change itself was applied)

	watcher      jetstream.KeyWatcher
	stopWatchCtx context.CancelFunc // ends the watcher's context (nats.go waits on it)
	done         chan struct{}      // closed by the watch goroutine when it exits
	closeOnce    sync.Once
}

// Open creates (or updates) the bucket and the audit stream, loads every stored flag,
// and starts watching. When it returns, Evaluator() reflects the bucket's content.
// ctx bounds the setup only.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*KVStore, error) {
	if o.Bucket == "" {
		o.Bucket = "flags"
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
		stored:       make(map[string]Flag),
		done:         make(chan struct{}),
	}
	// The watcher lives until Close, not until ctx ends. nats.go keeps a goroutine
	// per (re)subscription waiting on this context, so Close cancels it.
	wctx, wcancel := context.WithCancel(context.Background())
	w, err := kv.WatchAll(wctx)
	if err != nil {
		wcancel()
		return nil, fmt.Errorf("watch flags bucket %s: %w", o.Bucket, err)
	}
	s.watcher, s.stopWatchCtx = w, wcancel
	// Initial values, up to the nil marker, form the first snapshot.
	for loaded := false; !loaded; {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				wcancel()
				return nil, fmt.Errorf("watch flags bucket %s: closed while loading", o.Bucket)
			}
			if e == nil {
				loaded = true
				break
			}
			s.applyEntry(e)
			s.applied.Store(e.Revision())
		case <-ctx.Done():
			s.stopWatcher()
			return nil, fmt.Errorf("load flags bucket %s: %w", o.Bucket, ctx.Err())
		}
	}
	s.hub.publish(merge(s.defaults, s.stored))
	go s.watch()
	return s, nil
}

// stopWatcher unsubscribes and drains the watcher until its channel closes (the NATS
// callback blocks on a full channel, so it must be drained).
func (s *KVStore) stopWatcher() {
	_ = s.watcher.Stop()
	for range s.watcher.Updates() {
	}
	s.stopWatchCtx()
}

// watch applies every update to the snapshot until the watcher's channel closes.
func (s *KVStore) watch() {
	defer close(s.done)
	for e := range s.watcher.Updates() {
		if e == nil {
			continue
		}
		if !s.applyEntry(e) {
			s.applied.Store(e.Revision())
			s.hub.wakeWaiters()
			continue
		}
		// Snapshot first, then applied, then wake: a Change waiting for this
		// revision must find the snapshot already updated.
		snap := merge(s.defaults, s.stored)
		s.hub.snap.Store(snap)
		s.applied.Store(e.Revision())
		s.hub.publish(snap)
	}
}

// applyEntry updates s.stored from one KV entry; it reports whether anything changed.
func (s *KVStore) applyEntry(e jetstream.KeyValueEntry) bool {
	name := e.Key()
	switch e.Operation() {
	case jetstream.KeyValueDelete, jetstream.KeyValuePurge:
		_, had := s.stored[name]
		delete(s.stored, name)
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
	s.stored[name] = f
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

// Stats reports records ignored as invalid and audit appends that failed.
func (s *KVStore) Stats() (invalidRecords, auditErrors uint64) {
	return s.invalid.Load(), s.auditErrs.Load()
}

func (s *KVStore) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
	}
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	return s.hub.closed
}

// Close implements Store: it stops the watcher, waits for the watch goroutine and
// closes every subscription. The JetStream connection is the caller's.
func (s *KVStore) Close() error {
	s.closeOnce.Do(func() {
		_ = s.watcher.Stop()
		<-s.done
		s.stopWatchCtx()
		s.hub.close()
	})
	return nil
}
