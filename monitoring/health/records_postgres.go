package health

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"encore.app/internal/pglisten"
)

// PostgresRecords keeps the fleet's snapshots in realtime_health (realtime/pgmigrations):
// a row per key with an expiry time. Put restarts the expiry; a trigger notifies
// every change, and a watcher reloads the bucket's live rows on a notification and
// every quarter TTL (at most 1 s), which is how expiries are seen. The pool is the
// caller's.
type PostgresRecords struct {
	pool *pgxpool.Pool
	cfg  BucketConfig
	log  *slog.Logger
}

var _ Records = (*PostgresRecords)(nil)

// OpenPostgresRecords returns the records of bucket cfg.Name on pool (the schema must
// be applied). ctx bounds a first check that the table answers.
func OpenPostgresRecords(ctx context.Context, pool *pgxpool.Pool, cfg BucketConfig, log *slog.Logger) (*PostgresRecords, error) {
	cfg.defaults()
	if log == nil {
		log = slog.Default()
	}
	if _, err := pool.Exec(ctx, `SELECT 1 FROM realtime_health LIMIT 1`); err != nil {
		return nil, fmt.Errorf("open health records %s: %w", cfg.Name, err)
	}
	return &PostgresRecords{pool: pool, cfg: cfg, log: log}, nil
}

// Put implements Records.
func (r *PostgresRecords) Put(ctx context.Context, key string, value []byte) error {
	if len(value) > MaxSnapshotBytes {
		return fmt.Errorf("health: value of %d bytes over the %d limit", len(value), MaxSnapshotBytes)
	}
	_, err := r.pool.Exec(ctx, `INSERT INTO realtime_health (bucket, key, value, revision, expires_at)
		VALUES ($1, $2, $3, nextval('realtime_health_revision'), clock_timestamp() + $4::bigint * interval '1 microsecond')
		ON CONFLICT (bucket, key) DO UPDATE SET value = EXCLUDED.value, revision = EXCLUDED.revision,
			expires_at = EXCLUDED.expires_at`, r.cfg.Name, key, value, r.cfg.TTL.Microseconds())
	return err
}

// Delete implements Records.
func (r *PostgresRecords) Delete(ctx context.Context, key string) error {
	_, err := r.pool.Exec(ctx, `DELETE FROM realtime_health WHERE bucket = $1 AND key = $2`, r.cfg.Name, key)
	return err
}

// Watch implements Records. Its goroutine owns a listening connection and ends with
// ctx (or a failed first read).
func (r *PostgresRecords) Watch(ctx context.Context) (<-chan Record, error) {
	lis, err := pglisten.Start(ctx, r.pool, "realtime_health", r.cfg.Name, r.log)
	if err != nil {
		return nil, fmt.Errorf("watch health records: %w", err)
	}
	held := map[string]int64{} // key -> revision sent
	first, err := r.diff(ctx, held)
	if err != nil {
		lis.Close()
		return nil, fmt.Errorf("watch health records: %w", err)
	}
	out := make(chan Record, len(first)+16)
	for _, rec := range first {
		out <- rec
	}
	go func() {
		defer close(out)
		defer lis.Close()
		t := time.NewTicker(min(max(r.cfg.TTL/4, 50*time.Millisecond), time.Second))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-lis.C:
			case <-t.C:
			}
			recs, err := r.diff(ctx, held)
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn("health: reading records failed; retrying", "err", err)
				}
				continue
			}
			for _, rec := range recs {
				select {
				case out <- rec:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// diff reads the bucket's rows and returns what changed since held (updated in place):
// a new revision is a put; a row past its expiry is reported once as expired (it stays
// until the cleanup below, well after the watcher saw it); a row gone while held was
// deleted by its owner. It also removes rows expired for a while.
func (r *PostgresRecords) diff(ctx context.Context, held map[string]int64) ([]Record, error) {
	rows, err := r.pool.Query(ctx, `SELECT key, value, revision, expires_at > clock_timestamp()
		FROM realtime_health WHERE bucket = $1`, r.cfg.Name)
	if err != nil {
		return nil, err
	}
	type row struct {
		key   string
		value []byte
		rev   int64
		live  bool
	}
	all, err := pgx.CollectRows(rows, func(cr pgx.CollectableRow) (row, error) {
		var x row
		err := cr.Scan(&x.key, &x.value, &x.rev, &x.live)
		return x, err
	})
	if err != nil {
		return nil, err
	}
	var out []Record
	seen := make(map[string]bool, len(all))
	for _, x := range all {
		seen[x.key] = true
		rev, ok := held[x.key]
		switch {
		case !x.live:
			if ok {
				delete(held, x.key)
				out = append(out, Record{Key: x.key, Deleted: true, Expired: true})
			}
		case !ok || rev != x.rev:
			held[x.key] = x.rev
			out = append(out, Record{Key: x.key, Value: x.value})
		}
	}
	for k := range held {
		if !seen[k] {
			delete(held, k)
			out = append(out, Record{Key: k, Deleted: true})
		}
	}
	_, _ = r.pool.Exec(ctx, `DELETE FROM realtime_health WHERE bucket = $1
		AND expires_at < clock_timestamp() - $2::bigint * interval '1 microsecond'`, r.cfg.Name, r.cfg.TTL.Microseconds())
	return out, nil
}
