package pgmigrations

import (
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m), testutil.LeakOptions()...) }

func TestListFollowsEncoreNaming(t *testing.T) {
	ms, err := List()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 4 {
		t.Fatalf("%d migrations", len(ms))
	}
	for i, m := range ms {
		if m.Version != uint64(i+1) || m.SQL == "" {
			t.Fatalf("migration %d: %+v", i, m.Name)
		}
	}
}

// Instances starting at once apply the migrations once; applying again is a no-op,
// and so is meeting a schema created by the other runner (every file is idempotent).
func TestApplyConcurrentAndIdempotent(t *testing.T) {
	ctx := testutil.Context(t)
	url := pgtest.DB(t)
	var applied [4][]uint64
	var wg sync.WaitGroup
	for i := range applied {
		wg.Go(func() {
			pool, err := pgxpool.New(ctx, url)
			if err != nil {
				t.Error(err)
				return
			}
			defer pool.Close()
			if applied[i], err = Apply(ctx, pool); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	total := 0
	for _, a := range applied {
		total += len(a)
	}
	ms, _ := List()
	if total != len(ms) {
		t.Fatalf("applied %v: %d in all, want %d", applied, total, len(ms))
	}
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// As Encore would: run every file again outside Apply's bookkeeping.
	for _, m := range ms {
		if _, err := pool.Exec(ctx, m.SQL); err != nil {
			t.Fatalf("%s run twice: %v", m.Name, err)
		}
	}
	if again, err := Apply(ctx, pool); err != nil || len(again) != 0 {
		t.Fatalf("second Apply: %v %v", again, err)
	}
}
