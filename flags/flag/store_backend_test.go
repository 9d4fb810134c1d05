package flag

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/pgmigrations"
)

// flagBackend is one shared store backend (NATS key-value, Postgres) for the tests
// that need more than one instance, a server restart or a record written behind the
// store's back.
type flagBackend struct {
	// open returns a new store instance (its own connection), closed at test end.
	open func(t *testing.T) Store
	// writeRaw and deleteRaw change the record as an operator would (nats kv put /
	// del, psql).
	writeRaw  func(t *testing.T, name, record string)
	deleteRaw func(t *testing.T, name string)
	// restart stops the server and starts it again with its data.
	restart func(t *testing.T)
	stats   func(s Store) KVStats
}

func flagBackends() map[string]func(t *testing.T) *flagBackend {
	return map[string]func(t *testing.T) *flagBackend{
		"kv": func(t *testing.T) *flagBackend {
			dir := t.TempDir()
			url, stop := startNATS(t, dir)
			port := mustPort(t, url)
			kvOf := func(t *testing.T) jetstream.KeyValue {
				_, js := connect(t, url)
				kv, err := js.KeyValue(testCtx(t), "flags")
				if err != nil {
					t.Fatal(err)
				}
				return kv
			}
			return &flagBackend{
				open: func(t *testing.T) Store {
					nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(nc.Close)
					js, err := jetstream.New(nc)
					if err != nil {
						t.Fatal(err)
					}
					return openKV(t, js, Options{})
				},
				writeRaw: func(t *testing.T, name, record string) {
					if _, err := kvOf(t).PutString(testCtx(t), name, record); err != nil {
						t.Fatal(err)
					}
				},
				deleteRaw: func(t *testing.T, name string) {
					if err := kvOf(t).Delete(testCtx(t), name); err != nil {
						t.Fatal(err)
					}
				},
				restart: func(t *testing.T) {
					stop()
					_, stop = startNATSPort(t, dir, port)
				},
				stats: func(s Store) KVStats { return s.(*KVStore).Stats() },
			}
		},
		"postgres": func(t *testing.T) *flagBackend {
			srv := pgtest.Start(t, pgtest.Options{})
			url := srv.DB(t)
			pool := openPool(t, url)
			if _, err := pgmigrations.Apply(testCtx(t), pool); err != nil {
				t.Fatal(err)
			}
			exec := func(t *testing.T, sql string, args ...any) {
				c, err := pgx.Connect(testCtx(t), url)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close(context.Background())
				if _, err := c.Exec(testCtx(t), sql, args...); err != nil {
					t.Fatal(err)
				}
			}
			return &flagBackend{
				open: func(t *testing.T) Store { return openPG(t, openPool(t, url), PostgresOptions{}) },
				writeRaw: func(t *testing.T, name, record string) {
					exec(t, `INSERT INTO realtime_flags (bucket, name, record, revision)
						VALUES ('flags', $1, $2, nextval('realtime_flag_revision'))
						ON CONFLICT (bucket, name) DO UPDATE SET record = EXCLUDED.record, revision = EXCLUDED.revision`, name, record)
				},
				deleteRaw: func(t *testing.T, name string) {
					exec(t, `DELETE FROM realtime_flags WHERE bucket = 'flags' AND name = $1`, name)
				},
				restart: func(t *testing.T) {
					srv.Crash()
					if err := srv.Restart(); err != nil {
						t.Fatal(err)
					}
				},
				stats: func(s Store) KVStats { return s.(*PostgresStore).Stats() },
			}
		},
	}
}

func openPool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(testCtx(t), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// openPG opens a PostgresStore on pool, closed at test end.
func openPG(t testing.TB, pool *pgxpool.Pool, o PostgresOptions) *PostgresStore {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quietLog
	}
	if o.PollInterval == 0 {
		o.PollInterval = time.Second
	}
	s, err := OpenPostgres(testCtx(t), pool, o)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func forEachBackend(t *testing.T, fn func(t *testing.T, be *flagBackend)) {
	for name, newBackend := range flagBackends() {
		t.Run(name, func(t *testing.T) { fn(t, newBackend(t)) })
	}
}

// TestRolloutStableAcrossRestart sets a 30% rollout, records every user's value over
// 10,000 IDs, restarts the server and opens a new store on the same storage, and
// checks the flag and every user's value survived.
func TestRolloutStableAcrossRestart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *flagBackend) {
		s := be.open(t)
		change(t, s, testCtx(t), StreamingV2, Change{Rollout: ptr(30)}, "ops")
		const users = 10000
		before := make([]bool, users)
		on := 0
		ev := s.Evaluator()
		for i := range users {
			before[i] = ev.Evaluate(StreamingV2, fmt.Sprintf("user-%d", i))
			if before[i] {
				on++
			}
		}
		share := float64(on) * 100 / users
		if math.Abs(share-30) > 1.5 {
			t.Fatalf("share %.2f%%, want 30±1.5", share)
		}
		s.Close()
		be.restart(t)
		s2 := be.open(t)
		f, ok := s2.Evaluator().Flag(StreamingV2)
		if !ok || f.Rollout != 30 || f.UpdatedBy != "ops" {
			t.Fatalf("after restart flag = %+v", f)
		}
		ev2 := s2.Evaluator()
		for i := range users {
			if got := ev2.Evaluate(StreamingV2, fmt.Sprintf("user-%d", i)); got != before[i] {
				t.Fatalf("user-%d: %v before restart, %v after", i, before[i], got)
			}
		}
		audit, err := s2.Audit(testCtx(t), 10)
		if err != nil || len(audit) != 1 || audit[0].Actor != "ops" {
			t.Fatalf("audit after restart = %+v, %v", audit, err)
		}
	})
}

// TestChangePropagates: two stores (two instances) on one backend; a change on one
// reaches the other's snapshot and subscribers, both ways.
func TestChangePropagates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *flagBackend) {
		a, b := be.open(t), be.open(t)
		subA, err := a.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		defer subA.Close()
		subB, err := b.Subscribe()
		if err != nil {
			t.Fatal(err)
		}
		defer subB.Close()
		for _, step := range []struct {
			from, to Store
			sub      *Subscription
			enabled  bool
		}{{a, b, subB, false}, {b, a, subA, true}, {a, b, subB, false}} {
			old := step.to.Evaluator()
			start := time.Now()
			change(t, step.from, testCtx(t), StreamingV2, Change{Enabled: ptr(step.enabled)}, "ops")
			waitUntil(t, step.sub, func() bool { return step.to.Evaluator().Evaluate(StreamingV2, "u1") == step.enabled })
			t.Logf("enabled=%v seen by the other instance after %v", step.enabled, time.Since(start))
			if !step.to.Evaluator().Changed(old, StreamingV2) {
				t.Fatal("Changed reports no change")
			}
		}
	})
}

// TestDeleteRestoresDefault: deleting the record (nats kv del, psql DELETE) brings
// the built-in default back, and a later change works on top of it.
func TestDeleteRestoresDefault(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *flagBackend) {
		s := be.open(t)
		ctx := testCtx(t)
		change(t, s, ctx, StreamingV2, Change{Enabled: ptr(false)}, "ops")
		sub, _ := s.Subscribe()
		defer sub.Close()
		be.deleteRaw(t, StreamingV2)
		waitUntil(t, sub, func() bool { return s.Evaluator().Evaluate(StreamingV2, "u1") })
		if f, _ := s.Evaluator().Flag(StreamingV2); f.Revision != 0 {
			t.Fatalf("after delete flag = %+v, want the built-in", f)
		}
		f := change(t, s, ctx, StreamingV2, Change{Rollout: ptr(20)}, "ops")
		if !f.Enabled || f.Rollout != 20 {
			t.Fatalf("change after delete = %+v", f)
		}
	})
}

// TestInvalidRecordIgnored: a record written behind the store's back that does not
// validate is ignored (counted, logged); the previous value stays in force, and a
// change replaces the corrupt record.
func TestInvalidRecordIgnored(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *flagBackend) {
		s := be.open(t)
		ctx := testCtx(t)
		change(t, s, ctx, StreamingV2, Change{Rollout: ptr(40)}, "ops")
		for i, bad := range []string{`not json`, `{"name":"realtime-streaming-v2","enabled":true,"rollout":500}`, `{"name":"other-name","enabled":true}`} {
			be.writeRaw(t, StreamingV2, bad)
			testutil.WaitFor(t, fmt.Sprintf("%d invalid records counted", i+1), func() bool { return be.stats(s).InvalidRecords == uint64(i+1) })
		}
		if f, _ := s.Evaluator().Flag(StreamingV2); f.Rollout != 40 {
			t.Fatalf("rollout = %d after invalid records, want 40", f.Rollout)
		}
		f := change(t, s, ctx, StreamingV2, Change{Rollout: ptr(50)}, "ops")
		if f.Rollout != 50 || !f.Enabled {
			t.Fatalf("change over corrupt record = %+v", f)
		}
	})
}

// TestWatchSurvivesServerRestart: the server restarts under an open store; a change
// made afterwards through another instance still reaches the store's snapshot, and
// the store counts a resync.
func TestWatchSurvivesServerRestart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *flagBackend) {
		s := be.open(t)
		sub, _ := s.Subscribe()
		defer sub.Close()
		be.restart(t)
		other := be.open(t)
		change(t, other, testCtx(t), StreamingV2, Change{Enabled: ptr(false)}, "ops")
		start := time.Now()
		waitUntil(t, sub, func() bool { return !s.Evaluator().Evaluate(StreamingV2, "u1") }) // the change after the restart
		t.Logf("change seen %v after it was written (across a server restart)", time.Since(start))
		testutil.WaitFor(t, "a resync counted after the reconnect", func() bool { return be.stats(s).Resyncs > 0 })
	})
}

// TestRecordWrittenByOperator: the emergency path in docs/flags.md (put a complete
// record by hand, then delete it) works.
func TestRecordWrittenByOperator(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be *flagBackend) {
		s := be.open(t)
		sub, _ := s.Subscribe()
		defer sub.Close()
		be.writeRaw(t, StreamingV2, `{"name":"realtime-streaming-v2","enabled":false,"rollout":100,"updatedBy":"nats-cli"}`)
		waitUntil(t, sub, func() bool { return !s.Evaluator().Evaluate(StreamingV2, "u1") })
		be.deleteRaw(t, StreamingV2)
		waitUntil(t, sub, func() bool { return s.Evaluator().Evaluate(StreamingV2, "u1") })
	})
}

// waitUntil waits for cond, checking it at each notification of sub; after
// testutil.Patience it fails the test.
func waitUntil(t *testing.T, sub *Subscription, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(testutil.Patience)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-sub.C:
		case <-deadline.C:
			t.Fatalf("condition not reached in %v", testutil.Patience)
		}
	}
}
