package stream

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"encore.app/flags/flag"
	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// A Go client refused at the upgrade (4300) long-polls with its cursor, receives
// every event, and returns to the stream when a poll answer says "stream".
func TestClientPollsWhileRefusedThenStreams(t *testing.T) {
	env := newEnv(t, Config{Authenticate: tokenAuth, StreamingAllowed: func(string) bool { return false },
		StreamReturnSpread: 50 * time.Millisecond}, bus.Config{})
	ctx := testutil.Context(t)
	var mu sync.Mutex
	seen := map[string]int{}
	c := rtclient.Start(ctx, rtclient.Config{URL: env.url, Token: "u1", Channels: []string{"p"}, Logger: testutil.Logger(t),
		OnEvent: func(ev protocol.Event) { mu.Lock(); seen[ev.ID]++; mu.Unlock() }})
	defer c.Close()
	testutil.WaitFor(t, "polling", func() bool { return c.Transport() == protocol.TransportPoll && c.Stats().Polls > 0 })
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(seen) }

	env.publishN("p", 0, 50)
	testutil.WaitFor(t, "50 events by polling", func() bool { return count() == 50 })
	if c.Stats().Connects != 0 {
		t.Fatalf("connected to the stream while refused: %+v", c.Stats())
	}

	env.eng.ApplyStreamingFlag(nil)
	testutil.WaitFor(t, "back on the stream", func() bool {
		return c.Transport() == protocol.TransportStream && env.eng.Snapshot().Subscriptions == 1
	})
	env.publishN("p", 50, 50)
	testutil.WaitFor(t, "100 events", func() bool { return count() == 100 })
	mu.Lock()
	defer mu.Unlock()
	for i := range 100 {
		if n := seen[fmt.Sprintf("p-%d", i)]; n != 1 {
			t.Fatalf("event p-%d delivered %d times", i, n)
		}
	}
	t.Logf("stats %+v", c.Stats())
}

// At a 30% rollout the engine moves exactly the users outside the rollout bucket (the
// share over 10,000 users and its stability are tested in flags/flag).
func TestRolloutMovesExactlyTheUsersOutside(t *testing.T) {
	env := newEnv(t, Config{Authenticate: tokenAuth}, bus.Config{})
	ctx := testutil.Context(t)
	const users = 200
	conns := make([]*rtclient.Conn, users)
	for i := range users {
		conns[i] = env.dial(ctx, &rtclient.DialOptions{Token: fmt.Sprintf("user-%d", i)})
	}
	// A client reads its welcome just before the engine registers it: the count of
	// moved connections below is exact only once all are registered.
	testutil.WaitFor(t, "every connection registered", func() bool { return env.eng.Snapshot().ActiveConnections == users })
	ev := flag.NewEvaluator(flag.Flag{Name: flag.StreamingV2, Enabled: true, Rollout: 30})
	moved := env.eng.ApplyStreamingFlag(func(uid string) bool { return ev.Evaluate(flag.StreamingV2, uid) })
	want := 0
	for i, c := range conns {
		uid := fmt.Sprintf("user-%d", i)
		out := flag.Bucket(flag.StreamingV2, uid) >= 3000
		if out {
			want++
			f, err := c.ReadFrame(ctx)
			if err != nil || f.Type != protocol.TypeTransport {
				t.Fatalf("%s outside the rollout: %+v %v", uid, f, err)
			}
			if _, err := c.ReadFrame(ctx); rtclient.CloseCode(err) != protocol.CloseUsePoll {
				t.Fatalf("%s: %v, want close 4300", uid, err)
			}
		}
	}
	if moved != want {
		t.Fatalf("moved %d, want %d", moved, want)
	}
	testutil.WaitFor(t, "moved connections closed", func() bool {
		return env.eng.Snapshot().ActiveConnections == int64(users-want)
	})
	t.Logf("rollout 30%%: %d of %d users stay on the stream (%.1f%%)", users-want, users, 100*float64(users-want)/users)
}

// A policy change that lands after a connection's own check and before it is
// registered (so ApplyStreamingFlag cannot see it) still moves the connection.
func TestStreamingFlagChangedDuringConnect(t *testing.T) {
	var env *testEnv
	var once sync.Once
	env = newEnv(t, Config{Authenticate: tokenAuth, StreamingAllowed: func(uid string) bool {
		if uid == "late" {
			once.Do(func() { env.eng.ApplyStreamingFlag(func(string) bool { return false }) })
		}
		return true
	}}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, &rtclient.DialOptions{Token: "late"})
	f, err := c.ReadFrame(ctx)
	if err != nil || f.Type != protocol.TypeTransport || f.Transport != TransportPoll {
		t.Fatalf("after the welcome: %+v %v, want a transport frame", f, err)
	}
	if _, err := c.ReadFrame(ctx); rtclient.CloseCode(err) != protocol.CloseUsePoll {
		t.Fatalf("%v, want close 4300", err)
	}
	if n := env.eng.Snapshot().TransportSwitches["to_poll"]; n != 1 {
		t.Errorf("to_poll %d, want 1 (moved once)", n)
	}
}
