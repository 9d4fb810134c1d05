// Package pgmigrations holds the Postgres schema of the realtime layer (the bus, the
// flag store, the fleet health records, the connection cap and the console's
// connection inspector) as numbered "<n>_<name>.up.sql" files, and applies them for
// the standalone server.
//
// The directory is not called "migrations": Encore gives every service with a
// subdirectory of that exact name a database of its own, which would make every
// `encore run` and `encore test` provision one whether the app uses the Postgres bus or
// not. Under Encore the realtime service declares the database with this directory,
//
//	var db = sqldb.NewDatabase("realtime", sqldb.DatabaseConfig{Migrations: "./pgmigrations"})
//
// and Encore applies the files (its rule: "<number>_<description>.up.sql", numbers
// unique and positive; other files, like this one, are ignored). Standalone, Apply
// does the same, recording what it applied in its own table
// (realtime_schema_migrations, so that an application's own migration tool and its
// schema_migrations table are left alone). Every file is idempotent (IF NOT EXISTS,
// CREATE OR REPLACE), so either runner may meet a schema the other created.
package pgmigrations

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
)

// FS holds the migration files.
//
//go:embed *.up.sql
var FS embed.FS

// Table records the versions Apply applied.
const Table = "realtime_schema_migrations"

// lockKey is the advisory lock that serializes Apply across instances starting at once.
const lockKey = 0x7265616c74696d65 // "realtime"

// Migration is one file.
type Migration struct {
	Version uint64
	Name    string // file name
	SQL     string
}

// fileRe is Encore's rule (v2/parser/infra/sqldb: `^(\d+)(_[^.]+)?\.(up|down).sql$`),
// narrowed to names that need no quoting.
var fileRe = regexp.MustCompile(`^(\d+)(_[A-Za-z0-9_-]+)?\.up\.sql$`)

// List returns the migrations in version order.
func List() ([]Migration, error) {
	ents, err := fs.ReadDir(FS, ".")
	if err != nil {
		return nil, err
	}
	var out []Migration
	seen := map[uint64]string{}
	for _, e := range ents {
		m := fileRe.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("pgmigrations: %s: name must be <number>_<description>.up.sql", e.Name())
		}
		v, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("pgmigrations: %s: bad version", e.Name())
		}
		if other, ok := seen[v]; ok {
			return nil, fmt.Errorf("pgmigrations: %s and %s have the same version", other, e.Name())
		}
		seen[v] = e.Name()
		b, err := FS.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: e.Name(), SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	return out, nil
}

// Apply applies the migrations not yet recorded in Table, each in its own
// transaction, under an advisory lock (instances starting together apply them once).
// It returns the versions it applied.
func Apply(ctx context.Context, pool *pgxpool.Pool) ([]uint64, error) {
	ms, err := List()
	if err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("pgmigrations: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(lockKey)); err != nil {
		return nil, fmt.Errorf("pgmigrations: lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(lockKey)) }()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+Table+` (
		version    bigint PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("pgmigrations: %w", err)
	}
	applied := map[uint64]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM "+Table)
	if err != nil {
		return nil, fmt.Errorf("pgmigrations: %w", err)
	}
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return nil, fmt.Errorf("pgmigrations: %w", err)
		}
		applied[uint64(v)] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgmigrations: %w", err)
	}
	var done []uint64
	for _, m := range ms {
		if applied[m.Version] {
			continue
		}
		// One multi-statement simple query: the file and its record commit together.
		sql := "BEGIN;\n" + m.SQL + "\n;INSERT INTO " + Table + " (version, name) VALUES (" +
			strconv.FormatUint(m.Version, 10) + ", '" + m.Name + "');\nCOMMIT;"
		if _, err := conn.Conn().PgConn().Exec(ctx, sql).ReadAll(); err != nil {
			_, _ = conn.Exec(context.WithoutCancel(ctx), "ROLLBACK")
			return done, fmt.Errorf("pgmigrations: %s: %w", m.Name, err)
		}
		done = append(done, m.Version)
	}
	return done, nil
}
