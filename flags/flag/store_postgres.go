package flag

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"encore.app/internal/pglisten"
)

// PostgresOptions configures a PostgresStore. The zero value is usable.
type PostgresOptions struct {
	Bucket   string       // flags namespace (rows of realtime_flags); default "flags"
	AuditMax int64        // audit entries kept (oldest dropped); default 1000
	Defaults []Flag       // built-in flags; nil means Builtins()
	Logger   *slog.Logger // default slog.Default()
	Now      func() time.Time
	// WriteTimeout bounds a Change's transaction and reload; default 5 s.
	WriteTimeout time.Duration
	// PollInterval is the safety net: the store reloads this often even without a
	// notification; default 5 s.
	PollInterval time.Duration
}

// PostgresStore stores flags in Postgres (realtime_flags, realtime_flag_audit of
// realtime/pgmigrations) and keeps an in-memory snapshot in sync: a trigger notifies
// every change (also one made with psql) and each instance reloads the bucket's rows
// (a handful) on a notification, after its listening connection reconnects, and
// every PollInterval. Changes are serialized per flag by an advisory lock inside
// their transaction, which also appends the audit entry. Safe for concurrent use;
// Close it to stop its goroutines. The pool is the caller's.
type PostgresStore struct {
	*hub

	// immutable after OpenPostgres
	pool         *pgxpool.Pool
	bucket       string
	auditMax     int64
	defaults     map[string]Flag
	log          *slog.Logger
	now          func() time.Time
	writeTimeout time.Duration
	poll         time.Duration
	lis          *pglisten.Listener

	reloadMu sync.Mutex        // serializes reloads (query and publish)
	stored   map[string]Flag   // guarded by reloadMu
	seen     map[string]uint64 // row revisions seen, valid or not; guarded by reloadMu

	applied atomic.Uint64 // highest revision in the snapshot's reload
	watched               // counters (Resyncs: reloads after the listener reconnected), Close
}

var _ Store = (*PostgresStore)(nil)

// OpenPostgres loads the bucket's flags and starts watching. When it returns,
// Evaluator() reflects the table. ctx bounds the setup only.
func OpenPostgres(ctx context.Context, pool *pgxpool.Pool, o PostgresOptions) (*PostgresStore, error) {
	if o.Bucket == "" {
		o.Bucket = DefaultBucket
	}
	if o.AuditMax <= 0 {
		o.AuditMax = 1000
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
	if o.PollInterval <= 0 {
		o.PollInterval = 5 * time.Second
	}
	defaults, err := defaultsMap(o.Defaults)
	if err != nil {
		return nil, err
	}
	s := &PostgresStore{
		hub: newHub(merge(defaults, nil)), pool: pool, bucket: o.Bucket, auditMax: o.AuditMax,
		defaults: defaults, log: o.Logger, now: o.Now, writeTimeout: o.WriteTimeout, poll: o.PollInterval,
		stored: map[string]Flag{}, seen: map[string]uint64{},
		watched: newWatched(),
	}
	if s.lis, err = pglisten.Start(ctx, pool, "realtime_flags", o.Bucket, o.Logger); err != nil {
		return nil, fmt.Errorf("flags: listen: %w", err)
	}
	if err := s.reload(ctx); err != nil {
		s.lis.Close()
		return nil, fmt.Errorf("flags: load %s: %w", o.Bucket, err)
	}
	go s.watch()
	return s, nil
}

// watch reloads on every wake-up of the listener and every PollInterval until Close.
func (s *PostgresStore) watch() {
	defer close(s.done)
	t := time.NewTicker(s.poll)
	defer t.Stop()
	reconnects := s.lis.Reconnects()
	for {
		select {
		case <-s.closing:
			return
		case <-s.lis.C:
		case <-t.C:
		}
		if err := s.reload(context.Background()); err != nil {
			s.log.Warn("flags: reload failed; retrying", "err", err)
			continue
		}
		if r := s.lis.Reconnects(); r != reconnects {
			reconnects = r
			s.resyncs.Add(1)
			s.log.Info("flags: reloaded after the listener reconnected")
		}
	}
}

// reload reads the bucket's rows and publishes a new snapshot if anything changed. A
// record that does not decode or validate is counted once per revision and ignored:
// the flag keeps its previous value.
func (s *PostgresStore) reload(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.writeTimeout)
	defer cancel()
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	rows, err := s.pool.Query(ctx, `SELECT name, record, revision FROM realtime_flags WHERE bucket = $1`, s.bucket)
	if err != nil {
		return err
	}
	type row struct {
		name, record string
		rev          int64
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.name, &x.record, &x.rev)
		return x, err
	})
	if err != nil {
		return err
	}
	next := make(map[string]Flag, len(all))
	seen := make(map[string]uint64, len(all))
	changed := false
	var maxRev uint64
	for _, r := range all {
		rev := uint64(r.rev)
		maxRev = max(maxRev, rev)
		seen[r.name] = rev
		if old, ok := s.stored[r.name]; ok && s.seen[r.name] == rev {
			next[r.name] = old
			continue
		}
		f, err := decodeRecord(r.name, []byte(r.record))
		if err != nil {
			if s.seen[r.name] != rev {
				s.invalid.Add(1)
				s.log.Error("ignoring invalid flag record", "flag", r.name, "revision", rev, "err", err)
			}
			if old, ok := s.stored[r.name]; ok {
				next[r.name] = old
			}
			continue
		}
		f.Revision = rev
		next[r.name] = f
		changed = true
	}
	for name := range s.stored {
		if _, ok := next[name]; !ok {
			changed = true
			s.log.Info("flag reset to default", "flag", name)
		}
	}
	s.stored, s.seen = next, seen
	if !changed {
		s.applied.Store(max(s.applied.Load(), maxRev))
		s.hub.wakeWaiters()
		return nil
	}
	snap := merge(s.defaults, next)
	s.hub.snap.Store(snap)
	s.applied.Store(max(s.applied.Load(), maxRev))
	s.hub.publish(snap)
	return nil
}

// Change implements Store: in one transaction, under an advisory lock of the flag,
// it reads the row, applies c, writes the row with the next revision and appends the
// audit entry; then it reloads, so this store's snapshot shows the change.
func (s *PostgresStore) Change(ctx context.Context, name string, c Change, actor string) (Flag, error) {
	if err := ValidateName(name); err != nil {
		return Flag{}, err
	}
	if s.isClosed() {
		return Flag{}, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, s.writeTimeout)
	defer cancel()
	h := fnv.New64a()
	_, _ = h.Write([]byte("realtime-flag:" + s.bucket + "/" + name))
	var next Flag
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64())); err != nil {
			return err
		}
		var record string
		var rev int64
		err := tx.QueryRow(ctx, `SELECT record, revision FROM realtime_flags WHERE bucket = $1 AND name = $2`, s.bucket, name).Scan(&record, &rev)
		var cur Flag
		exists := false
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			cur, exists = s.defaults[name]
			cur.Name = name
		case err != nil:
			return err
		default:
			if f, derr := decodeRecord(name, []byte(record)); derr == nil {
				cur, exists = f, true
			} else {
				s.log.Error("overwriting invalid flag record", "flag", name, "revision", rev, "err", derr)
				cur, exists = s.defaults[name]
				cur.Name = name
			}
			cur.Revision = uint64(rev)
		}
		n, err := c.apply(cur, exists, actor, s.now())
		if err != nil {
			return err
		}
		var newRev int64
		if err := tx.QueryRow(ctx, `SELECT nextval('realtime_flag_revision')`).Scan(&newRev); err != nil {
			return err
		}
		n.Revision = uint64(newRev)
		data, err := json.Marshal(&n)
		if err != nil {
			return fmt.Errorf("encode flag %s: %w", name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO realtime_flags (bucket, name, record, revision) VALUES ($1, $2, $3, $4)
			ON CONFLICT (bucket, name) DO UPDATE SET record = EXCLUDED.record, revision = EXCLUDED.revision`,
			s.bucket, name, string(data), newRev); err != nil {
			return err
		}
		e := AuditEntry{Time: n.UpdatedAt, Actor: actor, Flag: name, Reason: c.Reason, Before: beforeOf(cur, exists), After: n}
		entry, err := json.Marshal(&e)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO realtime_flag_audit (bucket, entry) VALUES ($1, $2)`, s.bucket, string(entry)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM realtime_flag_audit WHERE bucket = $1 AND seq <=
			(SELECT max(seq) FROM realtime_flag_audit WHERE bucket = $1) - $2`, s.bucket, s.auditMax); err != nil {
			return err
		}
		next = n
		logChange(s.log, e)
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrInvalid) || errors.Is(err, ErrConflict) {
			return Flag{}, err
		}
		return Flag{}, fmt.Errorf("write flag %s: %w", name, err)
	}
	if err := s.reload(ctx); err != nil {
		// Written and durable; only this instance's view lags until the next reload.
		s.log.Warn("flag written but the reload failed", "flag", name, "revision", next.Revision, "err", err)
	}
	return next.clone(), nil
}

// Audit implements Store: the newest limit entries, newest first.
func (s *PostgresStore) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	if s.isClosed() {
		return nil, ErrClosed
	}
	limit = clampAuditLimit(limit)
	rows, err := s.pool.Query(ctx, `SELECT seq, entry FROM realtime_flag_audit WHERE bucket = $1 ORDER BY seq DESC LIMIT $2`, s.bucket, limit)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	out := make([]AuditEntry, 0, limit)
	for rows.Next() {
		var seq int64
		var entry string
		if err := rows.Scan(&seq, &entry); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		var e AuditEntry
		if err := json.Unmarshal([]byte(entry), &e); err != nil {
			s.log.Error("skipping unreadable audit entry", "seq", seq, "err", err)
			continue
		}
		e.Seq = uint64(seq)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Stats returns the store's counters (Resyncs: reloads after the listener reconnected).
func (s *PostgresStore) Stats() KVStats { return s.stats() }

// Close implements Store: it stops the listener and the watch goroutine and closes
// every subscription. The pool is the caller's.
func (s *PostgresStore) Close() error {
	s.stop(func() {
		s.lis.Close()
		s.hub.close()
	})
	return nil
}
