package bus_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/bus/bustest"
	"encore.app/realtime/protocol"
)

// NATS stopped: publishes fail with ErrUnavailable (bounded by CallTimeout), then the
// circuit opens; Info and Replay fail too; after a restart the circuit closes by itself
// and nothing acknowledged before the outage is lost. The breaker's timing is
// TestBreakerTiming's (synctest); here the durations are only logged.
func TestBreakerFailsFastAndRecovers(t *testing.T) {
	srv := bustest.Start(t)
	ctx := testutil.ContextWithin(t, 5*time.Minute)
	js, err := bus.NewJetStream(ctx, bus.Config{URL: srv.URL(), Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var transitions []string
	b := bus.NewBreaker(js, bus.BreakerConfig{Connected: js.Conn().IsConnected, OpenFor: 300 * time.Millisecond,
		OnStateChange: func(from, to string) { mu.Lock(); transitions = append(transitions, to); mu.Unlock() }})
	defer b.Close()

	pub := func(id string) ([]bus.Ack, error) {
		return b.Publish(ctx, []*protocol.Event{{ID: id, Channel: "c"}})
	}
	var acked []uint64
	for i := range 5 {
		a, err := pub(fmt.Sprint("before-", i))
		if err != nil {
			t.Fatal(err)
		}
		acked = append(acked, a[0].Seq)
	}
	if b.State() != "closed" {
		t.Fatalf("state %s", b.State())
	}
	// A bad event is the caller's fault: it does not count against the bus.
	for range 5 {
		if _, err := b.Publish(ctx, []*protocol.Event{{Channel: "bad channel"}}); errors.Is(err, bus.ErrUnavailable) || err == nil {
			t.Fatalf("bad event: %v", err)
		}
	}
	if b.State() != "closed" {
		t.Fatalf("bad input opened the circuit")
	}

	srv.Stop()
	var worst time.Duration
	for i := range 20 {
		start := time.Now()
		_, err := pub(fmt.Sprint("down-", i))
		d := time.Since(start)
		worst = max(worst, d)
		if !errors.Is(err, bus.ErrUnavailable) {
			t.Fatalf("publish %d while down: %v", i, err)
		}
	}
	if b.State() != "open" && b.State() != "half-open" {
		t.Fatalf("state %s after 20 failures", b.State())
	}
	start := time.Now()
	if _, err := b.Info(ctx); !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("info while down: %v", err)
	}
	if err := b.Replay(ctx, []string{"c"}, 0, 5, func(*protocol.Event) error { return nil }); !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("replay while down: %v", err)
	}
	t.Logf("slowest failing publish while down: %v; info+replay %v", worst, time.Since(start))

	srv.Restart()
	var recovered time.Duration
	start = time.Now()
	testutil.WaitFor(t, "the breaker to close after the restart", func() bool {
		_, err := pub("after")
		return err == nil
	})
	recovered = time.Since(start)
	t.Logf("publishing again %v after the restart", recovered)
	if b.State() != "closed" {
		t.Fatalf("state %s after recovery", b.State())
	}
	var got []uint64
	if err := b.Replay(ctx, []string{"c"}, 0, acked[len(acked)-1], func(ev *protocol.Event) error {
		got = append(got, ev.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(acked) {
		t.Fatalf("acked before the outage %v, stored %v", acked, got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(transitions) < 2 || transitions[0] != "open" || transitions[len(transitions)-1] != "closed" {
		t.Fatalf("transitions %v", transitions)
	}
}
