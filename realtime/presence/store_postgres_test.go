package presence

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/pgmigrations"
	"encore.app/realtime/protocol"
)

// pgPool opens a pool on url with the schema applied, closed at the end of the test.
func pgPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	ctx := testutil.Context(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pgmigrations.Apply(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

func pgStore(t *testing.T, url string, cfg PostgresConfig) *PostgresStore {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	st, err := NewPostgresStore(testutil.Context(t), pgPool(t, url), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// The store contract (store_contract_test.go) on one database, each store on its own
// pool.
func TestPostgresStore(t *testing.T) {
	url := pgtest.DB(t)
	testStoreContract(t, func(t *testing.T, ttl time.Duration) Store { return pgStore(t, url, PostgresConfig{TTL: ttl}) })
}

// killListeners terminates the presence stores' LISTEN backends on url's database and
// returns how many it ended.
func killListeners(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(testutil.Context(t), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN %realtime_presence%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// sums records what a raw follow delivered.
type sums struct {
	mu  sync.Mutex
	got []Summary
}

func (s *sums) fn(sum *Summary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, *sum)
}

func (s *sums) has(cond func(Summary) bool) func() bool {
	return func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return slices.ContainsFunc(s.got, cond)
	}
}

// The listener's connection is killed: the store reconnects and reads every followed
// channel again. A removal missed meanwhile (here: a row deleted behind the store's
// back, no notification at all) is delivered as an empty summary newer than the one
// held; a summary too large for a notification is read from the table.
func TestPostgresStoreReloadsAfterLostListener(t *testing.T) {
	url := pgtest.DB(t)
	pool := pgPool(t, url)
	st := pgStore(t, url, PostgresConfig{})
	var got sums
	stop, err := st.Follow("room", got.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx := testutil.Context(t)
	if err := st.Put(ctx, []*Summary{{Channel: "room", Instance: "x", Inc: "i1", V: 3, Members: map[string]int{"u1": 1}, Users: 1, Conns: 1}}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "x's summary", got.has(func(s Summary) bool { return s.Instance == "x" && s.V == 3 && s.Users == 1 }))

	if _, err := pool.Exec(ctx, `DELETE FROM realtime_presence WHERE channel = 'room'`); err != nil {
		t.Fatal(err)
	}
	if n := killListeners(t, pool); n != 1 {
		t.Fatalf("killed %d listeners", n)
	}
	testutil.WaitFor(t, "the reconnect", func() bool { return st.Reconnects() >= 1 })
	testutil.WaitFor(t, "x's removal after the reload", got.has(func(s Summary) bool { return s.Instance == "x" && s.V > 3 && s.Empty() }))

	// Too large to carry: the notification names the channel, the store reads it.
	big := &Summary{Channel: "room", Instance: "y", Inc: "i2", V: 1, Members: map[string]int{}, Conns: 1000}
	for i := range 1000 {
		big.Members[string(rune('a'+i%26))+time.Duration(i).String()] = 1
	}
	big.Users = len(big.Members)
	if err := st.Put(ctx, []*Summary{big}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "y's large summary", got.has(func(s Summary) bool { return s.Instance == "y" && s.Users == 1000 }))
}

// Two trackers converge after both listeners were killed while the members changed,
// and after the database crashed (the unlogged tables come back empty: the trackers
// write everything again once their listeners reconnected).
func TestPostgresStoreTrackersConverge(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	url := srv.URL("postgres")
	const ttl = 5 * time.Second
	mod := func(c *Config) { c.TTL, c.Grace, c.Timeout = ttl, 100*time.Millisecond, time.Second }
	sa, sb := pgStore(t, url, PostgresConfig{TTL: ttl}), pgStore(t, url, PostgresConfig{TTL: ttl})
	a := start(t, sa, "inst-a", mod)
	b := start(t, sb, "inst-b", mod)
	var d diffs
	defer a.Watch("room", d.fn)()
	saw := func(want string) func() bool {
		return func() bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			return slices.Contains(d.got, want)
		}
	}
	b.Join("room", "u1")
	testutil.WaitFor(t, "u1's join", saw("+u1"))

	pool := pgPool(t, url)
	if n := killListeners(t, pool); n != 2 {
		t.Fatalf("killed %d listeners", n)
	}
	b.Join("room", "u2")
	b.Leave("room", "u1")
	testutil.WaitFor(t, "u2's join after the kill", saw("+u2"))
	testutil.WaitFor(t, "u1's leave after the kill", saw("-u1"))
	testutil.WaitFor(t, "both reconnects", func() bool { return sa.Reconnects() >= 1 && sb.Reconnects() >= 1 })

	srv.Crash()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "b's summary written again", func() bool {
		sums, err := sa.Load(context.Background(), "room")
		return err == nil && len(sums) == 1 && sums[0].Users == 1
	})
	b.Join("room", "u3")
	testutil.WaitFor(t, "u3's join after the crash", saw("+u3"))
	testutil.WaitFor(t, "the snapshot after the crash", func() bool {
		users := 0
		err := a.Snapshot(context.Background(), "room", 10, func(s *protocol.PresenceSnapshot) { users = s.Users })
		return err == nil && users == 2
	})
}

// The store's ticker deletes lapsed liveness records and summaries past the retention;
// reads skip a lapsed record before that.
func TestPostgresStoreCleanup(t *testing.T) {
	url := pgtest.DB(t)
	pool := pgPool(t, url)
	st := pgStore(t, url, PostgresConfig{TTL: 200 * time.Millisecond, Retention: 200 * time.Millisecond, CleanupEvery: time.Hour})
	ctx := testutil.Context(t)
	if err := st.Heartbeat(ctx, Alive{Instance: "x", Inc: "i1"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, []*Summary{{Channel: "room", Instance: "x", Inc: "i1", V: 1, Members: map[string]int{"u": 1}, Users: 1, Conns: 1}}); err != nil {
		t.Fatal(err)
	}
	count := func(table string) int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	testutil.WaitFor(t, "the record to lapse", func() bool {
		recs, err := st.loadAlive(ctx)
		return err == nil && len(recs) == 0
	})
	if count("realtime_presence_alive") != 1 || count("realtime_presence") != 1 {
		t.Fatal("rows deleted before a cleanup")
	}
	// Another store of the scope, with a ticker that runs.
	pgStore(t, url, PostgresConfig{TTL: 200 * time.Millisecond, Retention: 200 * time.Millisecond, CleanupEvery: 50 * time.Millisecond})
	testutil.WaitFor(t, "the cleanup", func() bool {
		return count("realtime_presence_alive") == 0 && count("realtime_presence") == 0
	})
	// Scopes: another scope's live rows are invisible here and survive a cleanup; its
	// expired ones are deleted by any store (a namespace whose servers are all gone).
	other := pgStore(t, url, PostgresConfig{Scope: "other", TTL: time.Hour, Retention: time.Hour})
	gone := pgStore(t, url, PostgresConfig{Scope: "gone", TTL: time.Millisecond, Retention: time.Millisecond, CleanupEvery: time.Hour})
	for _, s := range []*PostgresStore{other, gone} {
		if err := s.Heartbeat(ctx, Alive{Instance: "y", Inc: "i2"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, []*Summary{{Channel: "room", Instance: "y", Inc: "i2", V: 1, Users: 1, Conns: 1, Members: map[string]int{"v": 1}}}); err != nil {
			t.Fatal(err)
		}
	}
	if recs, err := st.loadAlive(ctx); err != nil || len(recs) != 0 {
		t.Fatalf("another scope's records seen: %v %v", recs, err)
	}
	if sums, err := st.Load(ctx, "room"); err != nil || len(sums) != 0 {
		t.Fatalf("another scope's summaries seen: %v %v", sums, err)
	}
	testutil.WaitFor(t, "the expired rows of the gone scope to be deleted", func() bool {
		return count("realtime_presence_alive") == 1 && count("realtime_presence") == 1
	})
	if recs, err := other.loadAlive(ctx); err != nil || len(recs) != 1 {
		t.Fatalf("the other scope's records: %v %v", recs, err)
	}
	if sums, err := other.Load(ctx, "room"); err != nil || len(sums) != 1 {
		t.Fatalf("the other scope's summaries: %v %v", sums, err)
	}
}
