package limits

import (
	"context"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// NewConnCapPostgres is NewConnCap on Postgres: each open connection is a row of
// realtime_conns (realtime/pgmigrations) that counts until its expires_at, refreshed
// by its instance every Heartbeat in one statement. Admission runs in a transaction
// under an advisory lock of the user, so racing connects of one user are counted one
// after the other: exactly Max get in. The pool is the caller's.
func NewConnCapPostgres(ctx context.Context, pool *pgxpool.Pool, cfg ConnCapConfig) (*ConnCap, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `SELECT 1 FROM realtime_conns LIMIT 1`); err != nil {
		return nil, err
	}
	return startConnCap(cfg, &pgCap{pool: pool, bucket: cfg.Bucket, ttlUS: cfg.TTL.Microseconds()}), nil
}

type pgCap struct {
	pool   *pgxpool.Pool
	bucket string
	ttlUS  int64
}

func (p *pgCap) admit(ctx context.Context, prefix, key string, val capEntry, max int) (before int, h heldKey, ok bool, err error) {
	lock := fnv.New64a()
	_, _ = lock.Write([]byte("realtime-conns:" + p.bucket + "/" + prefix))
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lock.Sum64())); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM realtime_conns
			WHERE bucket = $1 AND user_key = $2 AND expires_at > clock_timestamp()`, p.bucket, prefix).Scan(&before); err != nil {
			return err
		}
		if before >= max {
			return nil
		}
		ok = true
		_, err := tx.Exec(ctx, `INSERT INTO realtime_conns (bucket, key, user_key, instance, expires_at)
			VALUES ($1, $2, $3, $4, clock_timestamp() + $5::bigint * interval '1 microsecond')`,
			p.bucket, key, prefix, val.Instance, p.ttlUS)
		return err
	})
	if err != nil {
		return 0, heldKey{}, false, err
	}
	return before, heldKey{first: 1, last: 1}, ok, nil
}

func (p *pgCap) remove(ctx context.Context, key string) error {
	_, err := p.pool.Exec(ctx, `DELETE FROM realtime_conns WHERE bucket = $1 AND key = $2`, p.bucket, key)
	return err
}

// refresh extends every held key in one statement, inserting again those that
// expired and were removed; then it removes rows long expired.
func (p *pgCap) refresh(ctx context.Context, keys map[string]heldKey, held func(string) bool, instance string) map[string]heldKey {
	names := make([]string, 0, len(keys))
	for k := range keys {
		if held(k) {
			names = append(names, k)
		}
	}
	if _, err := p.pool.Exec(ctx, `INSERT INTO realtime_conns (bucket, key, user_key, instance, expires_at)
		SELECT $1, k, split_part(k, '.', 1), $3, clock_timestamp() + $4::bigint * interval '1 microsecond'
		FROM unnest($2::text[]) AS k
		ON CONFLICT (bucket, key) DO UPDATE SET expires_at = EXCLUDED.expires_at`,
		p.bucket, names, instance, p.ttlUS); err != nil {
		return nil
	}
	_, _ = p.pool.Exec(ctx, `DELETE FROM realtime_conns WHERE bucket = $1
		AND expires_at < clock_timestamp() - $2::bigint * interval '1 microsecond'`, p.bucket, p.ttlUS)
	out := make(map[string]heldKey, len(names))
	for _, k := range names {
		out[k] = heldKey{first: 1, last: 1}
	}
	return out
}
