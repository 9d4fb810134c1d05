package bus_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
)

// scriptedBus answers Publish and Info as its mode says: "ok", "down" (fails with
// ErrUnavailable at once) or "hang" (no answer until the context ends). It counts the
// calls that reached it.
type scriptedBus struct {
	mu    sync.Mutex
	mode  string
	calls int
}

func (s *scriptedBus) set(mode string) { s.mu.Lock(); s.mode = mode; s.mu.Unlock() }

func (s *scriptedBus) reached() int { s.mu.Lock(); defer s.mu.Unlock(); return s.calls }

func (s *scriptedBus) answer(ctx context.Context) error {
	s.mu.Lock()
	s.calls++
	mode := s.mode
	s.mu.Unlock()
	switch mode {
	case "down":
		return bus.ErrUnavailable
	case "hang":
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (s *scriptedBus) Publish(ctx context.Context, evs []*protocol.Event) ([]bus.Ack, error) {
	if err := s.answer(ctx); err != nil {
		return nil, err
	}
	return []bus.Ack{{ID: evs[0].ID, Seq: 1}}, nil
}

func (s *scriptedBus) Info(ctx context.Context) (bus.Info, error) {
	return bus.Info{Epoch: "e"}, s.answer(ctx)
}

func (s *scriptedBus) Replay(ctx context.Context, _ []string, _, _ uint64, _ func(*protocol.Event) error) error {
	return s.answer(ctx)
}

func (s *scriptedBus) Last(ctx context.Context, _ string, _ uint64, _ int, _ func(*protocol.Event) error) error {
	return s.answer(ctx)
}

func (s *scriptedBus) Subscribe(context.Context, uint64, bus.Handler) error { return nil }
func (s *scriptedBus) Close() error                                         { return nil }

// The breaker's timing, on synctest's clock: a call without an answer fails after
// CallTimeout exactly; Failures consecutive failures open the circuit, which then
// refuses calls at once without reaching the bus; once OpenFor has passed one probe goes through,
// and a good probe closes the circuit. A caller's cancelled context is not a failure.
func TestBreakerTiming(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sb := &scriptedBus{mode: "ok"}
		var mu sync.Mutex
		var states []string
		b := bus.NewBreaker(sb, bus.BreakerConfig{CallTimeout: time.Second, Failures: 3, OpenFor: 5 * time.Second,
			OnStateChange: func(_, to string) { mu.Lock(); states = append(states, to); mu.Unlock() }})
		ctx := context.Background()
		pub := func() error {
			_, err := b.Publish(ctx, []*protocol.Event{{ID: "x", Channel: "c"}})
			return err
		}
		if err := pub(); err != nil {
			t.Fatal(err)
		}

		// No answer: each call fails with ErrUnavailable after exactly CallTimeout.
		sb.set("hang")
		for i := range 2 {
			start := time.Now()
			err := pub()
			if !errors.Is(err, bus.ErrUnavailable) || time.Since(start) != time.Second {
				t.Fatalf("hanging call %d: %v after %v, want unavailable after 1s", i, err, time.Since(start))
			}
		}
		if b.State() != "closed" {
			t.Fatalf("state %s after 2 failures, want closed", b.State())
		}
		// The caller giving up says nothing about the bus.
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err := b.Info(cctx)
		cancel()
		if err == nil || b.State() != "closed" {
			t.Fatalf("cancelled call: %v, state %s; want an error and still closed", err, b.State())
		}
		// The third consecutive failure opens the circuit.
		sb.set("down")
		if err := pub(); !errors.Is(err, bus.ErrUnavailable) || b.State() != "open" {
			t.Fatalf("third failure: %v, state %s; want unavailable and open", err, b.State())
		}

		// Open: refused at once, without reaching the bus, until OpenFor has passed.
		reached := sb.reached()
		start := time.Now()
		for range 10 {
			if err := pub(); !errors.Is(err, bus.ErrCircuitOpen) || !errors.Is(err, bus.ErrUnavailable) {
				t.Fatalf("call while open: %v, want circuit open", err)
			}
			if err := b.Replay(ctx, []string{"c"}, 0, 1, nil); !errors.Is(err, bus.ErrCircuitOpen) {
				t.Fatalf("replay while open: %v", err)
			}
		}
		if time.Since(start) != 0 || sb.reached() != reached {
			t.Fatalf("refusals took %v and %d calls reached the bus, want 0 and 0", time.Since(start), sb.reached()-reached)
		}
		time.Sleep(5*time.Second - time.Millisecond)
		if err := pub(); !errors.Is(err, bus.ErrCircuitOpen) {
			t.Fatalf("just before OpenFor: %v, want circuit open", err)
		}

		// Past OpenFor: a failed probe opens it again for another OpenFor.
		time.Sleep(2 * time.Millisecond)
		if err := pub(); errors.Is(err, bus.ErrCircuitOpen) || !errors.Is(err, bus.ErrUnavailable) || b.State() != "open" {
			t.Fatalf("failed probe: %v, state %s; want the bus's error and open again", err, b.State())
		}
		if err := pub(); !errors.Is(err, bus.ErrCircuitOpen) {
			t.Fatalf("after a failed probe: %v, want circuit open", err)
		}
		// A good probe closes it.
		sb.set("ok")
		time.Sleep(5*time.Second + time.Millisecond)
		if err := pub(); err != nil || b.State() != "closed" {
			t.Fatalf("good probe: %v, state %s; want closed", err, b.State())
		}
		mu.Lock()
		defer mu.Unlock()
		want := []string{bus.BreakerOpen, bus.BreakerHalfOpen, bus.BreakerOpen, bus.BreakerHalfOpen, bus.BreakerClosed}
		if len(states) != len(want) {
			t.Fatalf("transitions %v, want %v", states, want)
		}
		for i := range want {
			if states[i] != want[i] {
				t.Fatalf("transitions %v, want %v", states, want)
			}
		}
	})
}
