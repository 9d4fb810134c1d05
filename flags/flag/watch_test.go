package flag

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestWatch(t *testing.T) {
	s, err := NewMemory(MemoryOptions{Logger: quietLog})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(testCtx(t))
	type call struct{ was, now bool }
	calls := make(chan call, 10)
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, s, StreamingV2, func(old, cur *Evaluator) {
			calls <- call{old.Evaluate(StreamingV2, "u"), cur.Evaluate(StreamingV2, "u")}
		})
	}()
	// Let Watch subscribe: a change on another flag first must not call fn, and the
	// StreamingV2 change after it must.
	waitSubscribed(t, s)
	change(t, s, testCtx(t), "other-flag", Change{Enabled: ptr(true)}, "a")
	change(t, s, testCtx(t), StreamingV2, Change{Enabled: ptr(false)}, "a")
	select {
	case c := <-calls:
		if !c.was || c.now {
			t.Fatalf("call %+v, want on -> off", c)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fn not called")
	}
	select {
	case c := <-calls:
		t.Fatalf("extra call %+v (other flag's change?)", c)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch = %v", err)
	}

	// Closing the source ends Watch with ErrClosed.
	go func() { done <- Watch(testCtx(t), s, StreamingV2, func(_, _ *Evaluator) {}) }()
	waitSubscribed(t, s)
	s.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Watch after Close = %v", err)
	}
}

func waitSubscribed(t *testing.T, s *MemoryStore) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.hub.mu.Lock()
		n := len(s.hub.subs)
		s.hub.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Watch did not subscribe")
		}
		time.Sleep(time.Millisecond)
	}
}
