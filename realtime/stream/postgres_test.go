package stream

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// The engine on the Postgres bus: recovery answers and several instances on one
// database. (The bus itself is covered by realtime/bus's contract suite.)

func newPostgresEnv(t testing.TB, cfg Config, url string, bcfg bus.PostgresConfig) *testEnv {
	t.Helper()
	ctx := testutil.Context(t)
	bcfg.Logger = testutil.Logger(t)
	b, err := bus.OpenPostgres(ctx, url, bcfg)
	if err != nil {
		t.Fatalf("bus: %v", err)
	}
	return newEnvOnBus(t, cfg, b, nil)
}

// TestPostgresNotRecovered is TestNotRecovered on the Postgres bus.
func TestPostgresNotRecovered(t *testing.T) {
	testNotRecovered(t, newPostgresEnv(t, Config{WindowEvents: 5}, pgtest.DB(t), bus.PostgresConfig{MaxBytes: 8 << 10, PruneInterval: 50 * time.Millisecond}))
}

// TestPostgresThreeInstances: three engines, each on its own bus instance, on one
// database; clients on all three get every event of their channel once, in order,
// with events published through every instance. One instance is killed mid-stream:
// its clients resume on another by cursor (from the bus) and miss nothing.
func TestPostgresThreeInstances(t *testing.T) {
	url := pgtest.DB(t)
	envs := []*testEnv{
		newPostgresEnv(t, Config{WindowEvents: 50}, url, bus.PostgresConfig{}),
		newPostgresEnv(t, Config{WindowEvents: 50}, url, bus.PostgresConfig{}),
		newPostgresEnv(t, Config{WindowEvents: 50}, url, bus.PostgresConfig{}),
	}
	ctx := testutil.ContextWithin(t, 90*time.Second)
	const perInstance, total = 3, 600
	type client struct {
		c   *rtclient.Conn
		env int
	}
	var clients []client
	for i, env := range envs {
		for range perInstance {
			c := env.dial(ctx, nil)
			subscribe(t, ctx, c, nil, "room")
			clients = append(clients, client{c, i})
		}
	}
	epoch := envs[0].eng.Epoch()
	if envs[1].eng.Epoch() != epoch || envs[2].eng.Epoch() != epoch {
		t.Fatal("instances disagree on the epoch")
	}
	// Publish 600 events, 20 at a time round-robin through the instances (IDs in
	// order), and kill instance 2 after the first third.
	pubDone := make(chan error, 1)
	killed := make(chan struct{})
	go func() {
		for i := 0; i < total; i += 20 {
			if i == total/3 {
				<-killed
			}
			env := envs[(i/20)%2] // instances 0 and 1: 2 dies
			if err := env.tryPublishN("room", i, 20); err != nil {
				pubDone <- err
				return
			}
		}
		pubDone <- nil
	}()
	var mu sync.Mutex
	got := make([][]protocol.Event, len(clients))
	var wg sync.WaitGroup
	for k, cl := range clients {
		if cl.env != 2 {
			continue
		}
		wg.Go(func() {
			evs, _ := readEvents(t, ctx, cl.c, 100)
			mu.Lock()
			got[k] = evs
			mu.Unlock()
		})
	}
	wg.Wait()
	// Kill instance 2: connections dropped without a close frame, engine and bus gone.
	envs[2].srv.CloseClientConnections()
	envs[2].close()
	close(killed)
	for k, cl := range clients {
		if cl.env != 2 {
			continue
		}
		last := got[k][len(got[k])-1].Seq
		c := envs[0].dial(ctx, nil)
		f := subscribe(t, ctx, c, &protocol.Cursor{Seq: last, Epoch: epoch}, "room")
		if f.Recovery == nil || !f.Recovery.Recovered {
			t.Fatalf("resume after the kill: %+v", f.Recovery)
		}
		rest, _ := readEvents(t, ctx, c, total-len(got[k]))
		got[k] = append(got[k], rest...)
	}
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	for k, cl := range clients {
		if cl.env == 2 {
			checkSequence(t, got[k], "room", 0, total)
			continue
		}
		evs, _ := readEvents(t, ctx, cl.c, total)
		checkSequence(t, evs, "room", 0, total)
	}
}

// TestPostgresRestartUnderLoad: Postgres crashes (immediate shutdown) and comes back
// while events are published through two instances, each publish retried with the
// same IDs until acknowledged; connected clients on both instances stay connected and
// get every acknowledged event once, in order.
func TestPostgresRestartUnderLoad(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	url := srv.DB(t)
	envs := []*testEnv{
		newPostgresEnv(t, Config{}, url, bus.PostgresConfig{PollInterval: 200 * time.Millisecond}),
		newPostgresEnv(t, Config{}, url, bus.PostgresConfig{PollInterval: 200 * time.Millisecond}),
	}
	ctx := testutil.ContextWithin(t, 120*time.Second)
	var conns []*rtclient.Conn
	for _, env := range envs {
		for range 2 {
			c := env.dial(ctx, nil)
			subscribe(t, ctx, c, nil, "load")
			conns = append(conns, c)
		}
	}
	const batches, per = 120, 5
	var acked sync.Map // id -> seq
	var failures atomic.Int64
	pubDone := make(chan error, 1)
	progress := make(chan int, batches)
	go func() {
		for i := range batches {
			evs := make([]*protocol.Event, per)
			for k := range evs {
				evs[k] = &protocol.Event{ID: fmt.Sprintf("load-%d", i*per+k), Channel: "load"}
			}
			var acks []bus.Ack
			for attempt := 0; ; attempt++ {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				var err error
				acks, err = envs[i%2].eng.Publish(pctx, evs)
				pcancel()
				if err == nil {
					break
				}
				failures.Add(1)
				if attempt > 300 || ctx.Err() != nil {
					pubDone <- fmt.Errorf("batch %d never acknowledged: %w", i, err)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			for _, a := range acks {
				acked.Store(a.ID, a.Seq)
			}
			progress <- i
		}
		pubDone <- nil
	}()
	for i := range batches / 3 {
		if got := <-progress; got != i {
			t.Fatalf("progress %d", got)
		}
	}
	srv.Crash()
	time.Sleep(200 * time.Millisecond)
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d publish attempts failed during the outage and were retried", failures.Load())
	for k, c := range conns {
		evs, _ := readEvents(t, ctx, c, batches*per)
		checkSequence(t, evs, "load", 0, batches*per)
		for _, ev := range evs {
			if s, _ := acked.Load(ev.ID); s != ev.Seq {
				t.Fatalf("client %d: %s at seq %d, acknowledged as %v", k, ev.ID, ev.Seq, s)
			}
		}
	}
}
