package presence

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/protocol"
)

func quiet() *slog.Logger { return testutil.Discard() }

func start(t *testing.T, st Store, name string, mod func(*Config)) *Tracker {
	t.Helper()
	cfg := Config{Instance: name, Store: st, Logger: quiet()}
	if mod != nil {
		mod(&cfg)
	}
	tr, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

// diffs records what a watcher got, as "+u" and "-u" words.
type diffs struct {
	mu  sync.Mutex
	got []string
}

func (d *diffs) fn(p *protocol.PresenceDiff) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, u := range p.Joins {
		d.got = append(d.got, "+"+u)
	}
	for _, u := range p.Leaves {
		d.got = append(d.got, "-"+u)
	}
}

func (d *diffs) take() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	slices.Sort(d.got)
	s := strings.Join(d.got, " ")
	d.got = nil
	return s
}

func snapshot(t *testing.T, tr *Tracker, ch string, limit int) *protocol.PresenceSnapshot {
	t.Helper()
	var out *protocol.PresenceSnapshot
	if err := tr.Snapshot(context.Background(), ch, limit, func(s *protocol.PresenceSnapshot) { out = s }); err != nil {
		t.Fatal(err)
	}
	return out
}

// Joins and leaves of users on other instances reach a watcher once each: a user's
// first connection anywhere joins, its last one gone for the grace period leaves; a
// reconnect within the grace period, on the same instance or another, announces
// nothing.
func TestJoinLeaveAndGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := NewMemoryStore()
		a := start(t, st, "a", nil)
		b := start(t, st, "b", nil)
		var d diffs
		stop := a.Watch("room", d.fn)
		defer stop()
		synctest.Wait()

		b.Join("room", "u1")
		b.Join("room", "u1") // a second tab: no event
		b.Join("room", "")   // anonymous: never announced
		time.Sleep(2 * DefaultCountDelay)
		if got := d.take(); got != "+u1" {
			t.Fatalf("join: %q", got)
		}
		// Flap on b: the last connection goes and comes back within the grace period.
		b.Leave("room", "u1")
		b.Leave("room", "u1")
		time.Sleep(DefaultGrace / 2)
		b.Join("room", "u1")
		time.Sleep(2 * DefaultGrace)
		if got := d.take(); got != "" {
			t.Fatalf("flap on one instance: %q", got)
		}
		// Flap across instances: leaves b, comes back on a within the grace period.
		b.Leave("room", "u1")
		time.Sleep(DefaultGrace / 2)
		a.Join("room", "u1")
		time.Sleep(2 * DefaultGrace)
		if got := d.take(); got != "" {
			t.Fatalf("flap across instances: %q", got)
		}
		s := snapshot(t, a, "room", 10)
		if s.Users != 1 || s.Conns != 2 || s.Anonymous != 1 || len(s.Members) != 1 || s.Members[0] != (protocol.Member{User: "u1", Conns: 1}) {
			t.Fatalf("snapshot %+v", s)
		}
		// Gone for good: one leave after the grace period.
		a.Leave("room", "u1")
		time.Sleep(DefaultGrace / 2)
		if got := d.take(); got != "" {
			t.Fatalf("leave before the grace period ended: %q", got)
		}
		time.Sleep(DefaultGrace)
		if got := d.take(); got != "-u1" {
			t.Fatalf("leave: %q", got)
		}
		s = snapshot(t, b, "room", 10)
		if s.Users != 0 || s.Conns != 1 || s.Anonymous != 1 {
			t.Fatalf("snapshot after the leave %+v", s)
		}
	})
}

// A dead instance's members leave every view within TTL of its last heartbeat, and
// the lowest-named live instance purges its summaries.
func TestDeadInstanceExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := NewMemoryStore()
		a := start(t, st, "a", nil)
		b := start(t, st, "b", nil)
		c := start(t, st, "c", nil)
		var da, db diffs
		defer a.Watch("room", da.fn)()
		defer b.Watch("room", db.fn)()
		c.Join("room", "u1")
		c.Join("room", "u2")
		b.Join("room", "u2")
		time.Sleep(time.Second)
		if got := da.take(); got != "+u1 +u2" {
			t.Fatalf("a: %q", got)
		}
		if got := db.take(); got != "+u1 +u2" {
			t.Fatalf("b: %q", got)
		}
		// c dies: no more heartbeats, nothing withdrawn.
		c.Close()
		died := time.Now()
		for len(snapshot(t, a, "room", 10).Members) == 2 {
			time.Sleep(100 * time.Millisecond)
		}
		if gone := time.Since(died); gone > DefaultTTL+time.Second {
			t.Fatalf("c's members left after %v, TTL %v", gone, DefaultTTL)
		}
		synctest.Wait() // b's lapse timer fired at the same instant as a's; let it finish
		if got := da.take(); got != "-u1" {
			t.Fatalf("a after c died: %q", got)
		}
		if got := db.take(); got != "-u1" {
			t.Fatalf("b after c died: %q", got)
		}
		synctest.Wait()
		if sums, _ := st.Load(context.Background(), "room"); len(sums) != 1 || sums[0].Instance != "b" {
			t.Fatalf("stored after the purge: %+v", sums)
		}
		if a.Stats().Purges != 1 || b.Stats().Purges != 0 {
			t.Fatalf("purges: a %d b %d (a is the lowest name)", a.Stats().Purges, b.Stats().Purges)
		}
		// A snapshot of a channel nobody here follows reads the store: the dead
		// instance's summaries are gone or void.
		c2 := start(t, st, "c", nil) // the instance comes back: a new incarnation
		c2.Join("other", "u9")
		time.Sleep(time.Second)
		if s := snapshot(t, a, "other", 10); s.Users != 1 || s.Members[0].User != "u9" {
			t.Fatalf("other: %+v", s)
		}
	})
}

// A restarted instance's old summaries are void the moment its new incarnation
// heartbeats, even before they expire.
func TestRestartVoidsOldIncarnation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := NewMemoryStore()
		a := start(t, st, "a", nil)
		var d diffs
		defer a.Watch("room", d.fn)()
		b := start(t, st, "b", nil)
		b.Join("room", "u1")
		time.Sleep(time.Second)
		b.Close()
		b2 := start(t, st, "b", nil)
		synctest.Wait()
		if got := d.take(); got != "+u1 -u1" { // sorted: one join, then one leave
			t.Fatalf("restart: %q", got)
		}
		b2.Join("room", "u1")
		time.Sleep(time.Second)
		if got := d.take(); got != "+u1" {
			t.Fatalf("after the restart: %q", got)
		}
	})
}

// Churn costs at most one write per channel and flush interval, whatever the number
// of joins and leaves.
func TestWritesCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := NewMemoryStore()
		a := start(t, st, "a", nil)
		for i := range 2000 {
			u := fmt.Sprintf("u%d", i%50)
			a.Join("room", u)
			if i%2 == 1 {
				a.Leave("room", u)
			}
		}
		time.Sleep(DefaultFlushInterval / 2)
		synctest.Wait()
		if w := a.Stats().Writes; w > 2 {
			t.Fatalf("%d writes for one burst", w)
		}
		time.Sleep(2 * DefaultCountDelay)
		if w := a.Stats().Writes; w > 3 {
			t.Fatalf("%d writes after the burst", w)
		}
		s := snapshot(t, a, "room", 100)
		if s.Users != 50 || s.Conns != 1000 {
			t.Fatalf("snapshot %+v", s)
		}
	})
}

// Summaries list at most MaxMembers users; counts stay exact and a snapshot says
// when its user total is approximate. The snapshot's member list is capped by limit.
func TestMaxMembersAndLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := NewMemoryStore()
		a := start(t, st, "a", func(c *Config) { c.MaxMembers = 5 })
		b := start(t, st, "b", nil)
		var d diffs
		defer b.Watch("big", d.fn)()
		for i := range 8 {
			a.Join("big", fmt.Sprintf("u%d", i))
		}
		b.Join("big", "u0")
		time.Sleep(time.Second)
		s := snapshot(t, b, "big", 3)
		if s.Users != 9 || !s.Approximate || !s.Truncated || len(s.Members) != 3 || s.Conns != 9 {
			t.Fatalf("snapshot %+v", s)
		}
		if got := strings.Fields(d.take()); len(got) != 5 {
			t.Fatalf("joins of listed users only: %v", got)
		}
		s = snapshot(t, a, "big", 100)
		if s.Users != 8 || s.Approximate {
			t.Fatalf("own members are all counted: %+v", s)
		}
	})
}

// A snapshot delivered to a watcher sits between two diffs: no diff it already
// includes comes after it.
func TestSnapshotOrderedWithDiffs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := NewMemoryStore()
		a := start(t, st, "a", nil)
		b := start(t, st, "b", nil)
		var mu sync.Mutex
		var log []string
		defer a.Watch("room", func(p *protocol.PresenceDiff) {
			mu.Lock()
			log = append(log, "diff:"+strings.Join(p.Joins, ","))
			mu.Unlock()
		})()
		synctest.Wait()
		go func() {
			for i := range 20 {
				b.Join("room", fmt.Sprintf("u%02d", i))
				time.Sleep(30 * time.Millisecond)
			}
		}()
		var members []string
		for range 10 {
			time.Sleep(40 * time.Millisecond)
			_ = a.Snapshot(context.Background(), "room", 100, func(s *protocol.PresenceSnapshot) {
				mu.Lock()
				members = members[:0]
				for _, m := range s.Members {
					members = append(members, m.User)
				}
				log = append(log, "snap:"+strings.Join(members, ","))
				mu.Unlock()
			})
		}
		time.Sleep(time.Second)
		// Replay the log: a snapshot must equal the joins seen before it.
		mu.Lock()
		defer mu.Unlock()
		var seen []string
		for _, e := range log {
			if j, ok := strings.CutPrefix(e, "diff:"); ok {
				seen = append(seen, strings.Split(j, ",")...)
				continue
			}
			got := strings.TrimPrefix(e, "snap:")
			want := slices.Clone(seen)
			slices.Sort(want)
			if got != strings.Join(want, ",") {
				t.Fatalf("snapshot %q after diffs %q", got, strings.Join(want, ","))
			}
		}
	})
}
