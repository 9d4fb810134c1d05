package flag

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/pgmigrations"
)

// storeFactories run the shared contract against every Store.
func storeFactories() map[string]func(t *testing.T) Store {
	return map[string]func(t *testing.T) Store{
		"memory": func(t *testing.T) Store {
			s, err := NewMemory(MemoryOptions{Logger: quietLog, AuditMax: 5})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"kv": func(t *testing.T) Store {
			url, _ := startNATS(t, t.TempDir())
			_, js := connect(t, url)
			return openKV(t, js, Options{AuditMax: 5})
		},
		"postgres": func(t *testing.T) Store {
			pool := openPool(t, pgtest.DB(t))
			if _, err := pgmigrations.Apply(testCtx(t), pool); err != nil {
				t.Fatal(err)
			}
			return openPG(t, pool, PostgresOptions{AuditMax: 5})
		},
	}
}

func TestStoreContract(t *testing.T) {
	for name, open := range storeFactories() {
		t.Run(name, func(t *testing.T) {
			t.Run("builtin default", func(t *testing.T) {
				s := open(t)
				f, ok := s.Evaluator().Flag(StreamingV2)
				if !ok || !f.Enabled || f.Rollout != 100 || f.Revision != 0 {
					t.Fatalf("builtin = %+v, %v", f, ok)
				}
			})
			t.Run("change applies and notifies", func(t *testing.T) {
				s := open(t)
				sub, err := s.Subscribe()
				if err != nil {
					t.Fatal(err)
				}
				defer sub.Close()
				f, err := s.Change(testCtx(t), StreamingV2, Change{Enabled: ptr(false), Reason: "incident 7"}, "ops")
				if err != nil {
					t.Fatal(err)
				}
				if f.Enabled || f.Rollout != 100 || f.Revision == 0 || f.UpdatedBy != "ops" || f.UpdatedAt.IsZero() {
					t.Fatalf("changed flag = %+v", f)
				}
				// Read-your-writes: the snapshot shows it when Change returns.
				if s.Evaluator().Evaluate(StreamingV2, "u1") {
					t.Fatal("snapshot still on after Change returned")
				}
				testutil.Receive(t, "a notification", sub.C)
			})
			t.Run("partial change keeps other fields", func(t *testing.T) {
				s := open(t)
				ctx := testCtx(t)
				change(t, s, ctx, "beta-ui", Change{Enabled: ptr(true), Rollout: ptr(30), SetOverrides: map[string]bool{"vip": true}}, "a")
				f := change(t, s, ctx, "beta-ui", Change{Rollout: ptr(40)}, "b")
				if !f.Enabled || f.Rollout != 40 || !f.Overrides["vip"] {
					t.Fatalf("after partial change: %+v", f)
				}
				f = change(t, s, ctx, "beta-ui", Change{RemoveOverrides: []string{"vip"}}, "b")
				if f.Overrides != nil {
					t.Fatalf("override not removed: %+v", f.Overrides)
				}
			})
			t.Run("new flag starts disabled at 100", func(t *testing.T) {
				s := open(t)
				f := change(t, s, testCtx(t), "new-thing", Change{Description: ptr("d")}, "a")
				if f.Enabled || f.Rollout != 100 {
					t.Fatalf("new flag = %+v", f)
				}
			})
			t.Run("invalid changes are refused and change nothing", func(t *testing.T) {
				s := open(t)
				ctx := testCtx(t)
				before := s.Evaluator()
				for _, c := range []struct {
					name string
					ch   Change
				}{
					{"Bad.Name", Change{Enabled: ptr(true)}},
					{StreamingV2, Change{Rollout: ptr(101)}},
					{StreamingV2, Change{Rollout: ptr(-1)}},
					{StreamingV2, Change{}},
					{StreamingV2, Change{SetOverrides: map[string]bool{"": true}}},
				} {
					if _, err := s.Change(ctx, c.name, c.ch, "a"); !errors.Is(err, ErrInvalid) {
						t.Errorf("Change(%s, %+v) = %v, want ErrInvalid", c.name, c.ch, err)
					}
				}
				if s.Evaluator() != before {
					t.Fatal("snapshot replaced by refused changes")
				}
			})
			t.Run("ifRevision conflict", func(t *testing.T) {
				s := open(t)
				ctx := testCtx(t)
				f := change(t, s, ctx, StreamingV2, Change{Rollout: ptr(50), IfRevision: ptr(uint64(0))}, "a")
				if _, err := s.Change(ctx, StreamingV2, Change{Rollout: ptr(60), IfRevision: ptr(uint64(0))}, "a"); !errors.Is(err, ErrConflict) {
					t.Fatalf("stale ifRevision: %v, want ErrConflict", err)
				}
				change(t, s, ctx, StreamingV2, Change{Rollout: ptr(60), IfRevision: ptr(f.Revision)}, "a")
			})
			t.Run("concurrent changes are all applied", func(t *testing.T) {
				s := open(t)
				ctx := testCtx(t)
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				for i := range 8 {
					wg.Go(func() {
						_, err := s.Change(ctx, "many", Change{SetOverrides: map[string]bool{fmt.Sprint("u", i): true}}, "a")
						errs <- err
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Fatal(err)
					}
				}
				f, _ := s.Evaluator().Flag("many")
				if len(f.Overrides) != 8 {
					t.Fatalf("overrides = %v, want 8 (a lost update)", f.Overrides)
				}
			})
			t.Run("audit is bounded and newest first", func(t *testing.T) {
				s := open(t) // AuditMax 5
				ctx := testCtx(t)
				for i := range 7 {
					change(t, s, ctx, StreamingV2, Change{Rollout: ptr(10 + i), Reason: fmt.Sprint("step ", i)}, fmt.Sprint("admin", i))
				}
				got, err := s.Audit(ctx, 100)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 5 {
					t.Fatalf("audit has %d entries, want 5 (bounded)", len(got))
				}
				e := got[0]
				if e.Actor != "admin6" || e.Reason != "step 6" || e.After.Rollout != 16 || e.Before == nil ||
					e.Before.Rollout != 15 || e.Time.IsZero() || e.Flag != StreamingV2 {
					t.Fatalf("newest audit entry = %+v", e)
				}
				if got[4].Actor != "admin2" {
					t.Fatalf("oldest kept = %s, want admin2", got[4].Actor)
				}
				if got, _ := s.Audit(ctx, 2); len(got) != 2 {
					t.Fatalf("limit 2 gave %d", len(got))
				}
			})
			t.Run("close ends subscriptions", func(t *testing.T) {
				s := open(t)
				sub, err := s.Subscribe()
				if err != nil {
					t.Fatal(err)
				}
				s.Close()
				if _, ok := <-sub.C; ok {
					t.Fatal("C delivered after Close")
				}
				if _, ok := <-sub.C; ok {
					t.Fatal("C not closed")
				}
				if _, err := s.Subscribe(); !errors.Is(err, ErrClosed) {
					t.Fatalf("Subscribe after Close = %v", err)
				}
				if _, err := s.Change(testCtx(t), StreamingV2, Change{Enabled: ptr(true)}, "a"); !errors.Is(err, ErrClosed) {
					t.Fatalf("Change after Close = %v", err)
				}
			})
		})
	}
}

func TestSubscribeLimit(t *testing.T) {
	s, err := NewMemory(MemoryOptions{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	subs := make([]*Subscription, 0, MaxSubscribers)
	for range MaxSubscribers {
		sub, err := s.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	if _, err := s.Subscribe(); !errors.Is(err, ErrTooManySubscribers) {
		t.Fatalf("subscriber %d: %v, want ErrTooManySubscribers", MaxSubscribers+1, err)
	}
	subs[0].Close()
	subs[0].Close() // idempotent
	if _, err := s.Subscribe(); err != nil {
		t.Fatalf("after closing one: %v", err)
	}
}

// TestNotificationsCoalesce: a subscriber that does not read gets one pending
// notification for many changes, never blocks the store, and then sees the newest
// snapshot.
func TestNotificationsCoalesce(t *testing.T) {
	s, err := NewMemory(MemoryOptions{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sub, _ := s.Subscribe()
	for i := range 50 {
		change(t, s, testCtx(t), StreamingV2, Change{Rollout: ptr(i)}, "a")
	}
	<-sub.C
	select {
	case <-sub.C:
		t.Fatal("second pending notification")
	default:
	}
	if f, _ := s.Evaluator().Flag(StreamingV2); f.Rollout != 49 {
		t.Fatalf("rollout = %d, want 49", f.Rollout)
	}
}

func change(tb testing.TB, s Store, ctx context.Context, name string, c Change, actor string) Flag {
	tb.Helper()
	f, err := s.Change(ctx, name, c, actor)
	if err != nil {
		tb.Fatal(err)
	}
	return f
}
