package bus_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"encore.app/realtime/bus"
	"encore.app/realtime/bus/bustest"
	"encore.app/realtime/protocol"
)

// NATS stopped: publishes fail with ErrUnavailable within CallTimeout, then at once once
// the circuit is open; Info and Replay fail fast too; after a restart the circuit closes
// by itself and nothing acknowledged before the outage is lost.
func TestBreakerFailsFastAndRecovers(t *testing.T) {
	srv := bustest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	js, err := bus.NewJetStream(ctx, bus.Config{URL: srv.URL(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
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
	if worst > time.Second {
		t.Fatalf("slowest failing publish took %v, want under 1s", worst)
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
	if d := time.Since(start); d > time.Second {
		t.Fatalf("info+replay while down took %v", d)
	}
	t.Logf("slowest failing publish while down: %v", worst)

	srv.Restart()
	var recovered time.Duration
	start = time.Now()
	for {
		if _, err := pub("after"); err == nil {
			recovered = time.Since(start)
			break
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("breaker did not close within 20s of the restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
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
