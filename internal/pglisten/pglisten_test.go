package pglisten

import (
	"slices"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m), testutil.LeakOptions()...) }

// StartFunc hands every payload to its callback, in order, and signals C only after a
// reconnect (here: its backend terminated).
func TestStartFuncPayloadsAndReconnect(t *testing.T) {
	ctx := testutil.Context(t)
	pool, err := pgxpool.New(ctx, pgtest.DB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var mu sync.Mutex
	var got []string
	l, err := StartFunc(ctx, pool, "pglisten_test", func(p string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, p)
	}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := pool.Exec(ctx, `SELECT pg_notify('pglisten_test', 'a'), pg_notify('pglisten_test', 'b')`); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "both payloads", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Equal(got, []string{"a", "b"})
	})
	select {
	case <-l.C:
		t.Fatal("C signalled for a notification")
	default:
	}
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN %pglisten_test%'`); err != nil {
		t.Fatal(err)
	}
	testutil.Receive(t, "the reconnect's signal", l.C)
	if l.Reconnects() != 1 {
		t.Fatalf("reconnects %d", l.Reconnects())
	}
	if _, err := pool.Exec(ctx, `SELECT pg_notify('pglisten_test', 'c')`); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the payload after the reconnect", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(got, "c")
	})
}
