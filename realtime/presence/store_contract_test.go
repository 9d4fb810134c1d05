package presence

import (
	"context"
	"testing"
	"time"

	"encore.app/internal/testutil"
)

// testStoreContract is what every shared Store must do, run by TestNATSStore and
// TestPostgresStore so the two cannot drift: two trackers on two stores of one
// backend (each its own connection; newStore returns a store whose liveness records
// lapse after ttl). Joins and leaves reach the other's watcher, snapshots read the
// store, a dead tracker's members lapse and its summaries are purged.
func testStoreContract(t *testing.T, newStore func(t *testing.T, ttl time.Duration) Store) {
	const ttl = time.Second
	mod := func(c *Config) { c.TTL, c.Grace = ttl, 100*time.Millisecond }
	sa, sb := newStore(t, ttl), newStore(t, ttl)
	a := start(t, sa, "inst-a", mod)
	b := start(t, sb, "inst-b", mod)
	var d diffs
	stop := a.Watch("user:42:inbox", d.fn)
	defer stop()

	b.Join("user:42:inbox", "42")
	b.Join("user:42:inbox", "")
	testutil.WaitFor(t, "the join", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.got) > 0
	})
	if got := d.take(); got != "+42" {
		t.Fatalf("join: %q", got)
	}
	// A channel nobody follows: read from the store (with a's own members).
	b.Join("public.x", "7")
	a.Join("public.x", "8")
	testutil.WaitFor(t, "b's summary of public.x", func() bool {
		return snapshot(t, a, "public.x", 10).Users == 2
	})
	s := snapshot(t, a, "public.x", 1)
	if s.Conns != 2 || len(s.Members) != 1 || !s.Truncated || s.Members[0].User != "7" {
		t.Fatalf("snapshot %+v", s)
	}
	// A removal reaches followers; loads no longer count it.
	b.Leave("public.x", "7")
	testutil.WaitFor(t, "the leave of 7", func() bool { return snapshot(t, a, "public.x", 10).Users == 1 })

	// b dies without withdrawing anything: its members lapse, a purges its summaries.
	b.Close()
	testutil.WaitFor(t, "b's members to lapse", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.got) > 0
	})
	if got := d.take(); got != "-42" {
		t.Fatalf("after b died: %q", got)
	}
	testutil.WaitFor(t, "the purge", func() bool { return a.Stats().Purges == 1 })
	sums, err := sa.Load(context.Background(), "user:42:inbox")
	if err != nil || len(sums) != 0 {
		t.Fatalf("stored after the purge: %v %+v", err, sums)
	}
	if st := a.Stats(); len(st.Instances) != 1 || st.Channels != 1 || st.Followed != 1 {
		t.Fatalf("stats %+v", st)
	}
}
