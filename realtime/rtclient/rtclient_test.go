package rtclient_test

import (
	"fmt"
	"log/slog"
	"math"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
	"encore.app/realtime/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testutil.LeakOptions()...) }

func TestBackoffBoundsAndCap(t *testing.T) {
	min, max := 100*time.Millisecond, 5*time.Minute
	for n := 1; n <= 40; n++ {
		ceil := time.Duration(math.Min(float64(min)*math.Pow(2, float64(n-1)), float64(max)))
		if got := rtclient.Backoff(n, min, max, 0.999999); got > ceil || got < ceil*99/100 {
			t.Errorf("attempt %d: %v, want just under %v", n, got, ceil)
		}
		if got := rtclient.Backoff(n, min, max, 0); got != 0 {
			t.Errorf("attempt %d with r=0: %v (full jitter starts at 0)", n, got)
		}
	}
	if got := rtclient.Backoff(1000, min, max, 0.5); got != max/2 {
		t.Errorf("capped: %v", got)
	}
}

func TestDedupTTLAndSize(t *testing.T) {
	d := rtclient.NewDedup(3, time.Minute)
	t0 := time.Unix(0, 0)
	for i, id := range []string{"a", "b", "c"} {
		if !d.Add(id, t0.Add(time.Duration(i)*time.Second)) {
			t.Fatalf("%s not new", id)
		}
	}
	if d.Add("b", t0.Add(5*time.Second)) {
		t.Fatal("duplicate b accepted")
	}
	d.Add("d", t0.Add(6*time.Second)) // evicts a (size bound)
	if d.Len() != 3 {
		t.Fatalf("len %d", d.Len())
	}
	if !d.Add("a", t0.Add(7*time.Second)) {
		t.Fatal("a still remembered after eviction")
	}
	// After the TTL everything old is forgotten.
	if !d.Add("b", t0.Add(2*time.Minute)) || d.Len() != 1 {
		t.Fatalf("ttl expiry: len %d", d.Len())
	}
}

func quiet() *slog.Logger { return testutil.Discard() }

// The Client reconnects after a dropped connection and after a server drain, resumes
// by cursor, and delivers every event once.
func TestClientResumesAcrossDropsAndDrain(t *testing.T) {
	ctx := testutil.Context(t)
	dir := t.TempDir()
	start := func() (*bus.JetStream, *stream.Engine, *httptest.Server) {
		b, err := bus.NewJetStream(ctx, bus.Config{DataDir: dir, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		e, err := stream.New(stream.Config{Logger: quiet(), PublisherKey: "k", RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, b)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return b, e, httptest.NewServer(e.Handler())
	}
	b, e, srv := start()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v2/realtime/stream"

	var mu sync.Mutex
	var got []protocol.Event
	c := rtclient.Start(ctx, rtclient.Config{URL: url, Channels: []string{"c"}, Logger: quiet(),
		BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		OnEvent: func(ev protocol.Event) { mu.Lock(); got = append(got, ev); mu.Unlock() }})
	defer c.Close()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	wait := func(n int) {
		t.Helper()
		if err := testutil.Eventually(ctx, testutil.Patience, func() bool { return count() >= n }); err != nil {
			t.Fatalf("got %d of %d events (stats %+v): %v", count(), n, c.Stats(), err)
		}
	}
	publish := func(e *stream.Engine, from, n int) {
		t.Helper()
		var evs []*protocol.Event
		for i := from; i < from+n; i++ {
			evs = append(evs, &protocol.Event{ID: fmt.Sprintf("c-%d", i), Channel: "c"})
		}
		if _, err := e.Publish(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	// The client subscribes without a cursor: events published before the engine has
	// its subscription would not be for it.
	testutil.WaitFor(t, "the client's subscription", func() bool { return e.Snapshot().Subscriptions == 1 })
	publish(e, 0, 50)
	wait(50)

	c.Drop() // abrupt drop; events published meanwhile are recovered
	publish(e, 50, 50)
	wait(100)

	// Drain and restart the server on the same storage (same URL port is not needed:
	// the bus keeps the events; the client is pointed at the new server).
	e.Shutdown(ctx)
	srv.Close()
	b.Close()
	b2, e2, srv2 := start()
	defer func() { e2.Close(); srv2.Close(); b2.Close() }()
	publish(e2, 100, 50)
	c.Close()
	cur := c.Cursor()
	url2 := "ws" + strings.TrimPrefix(srv2.URL, "http") + "/v2/realtime/stream"
	c2 := rtclient.Start(ctx, rtclient.Config{URL: url2, Channels: []string{"c"}, Cursor: cur, Logger: quiet(),
		OnEvent: func(ev protocol.Event) { mu.Lock(); got = append(got, ev); mu.Unlock() }})
	defer c2.Close()
	wait(150)
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 150 {
		t.Fatalf("%d events, want 150", len(got))
	}
	for i, ev := range got {
		if ev.ID != fmt.Sprintf("c-%d", i) {
			t.Fatalf("event %d is %s", i, ev.ID)
		}
	}
	if s := c.Stats(); s.Reconnects == 0 || s.Recovered == 0 {
		t.Errorf("stats %+v: want a reconnect with recovery", s)
	}
}
