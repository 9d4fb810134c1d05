package flag

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
)

// Watch on a memory store, in a synctest bubble: synctest.Wait returns once every
// goroutine is blocked, so "fn was not called" is checked exactly, not by waiting a
// while.
func TestWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := NewMemory(MemoryOptions{Logger: quietLog})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		type call struct{ was, now bool }
		calls := make(chan call, 10)
		done := make(chan error, 1)
		go func() {
			done <- Watch(ctx, s, StreamingV2, func(old, cur *Evaluator) {
				calls <- call{old.Evaluate(StreamingV2, "u"), cur.Evaluate(StreamingV2, "u")}
			})
		}()
		synctest.Wait() // Watch subscribed and waits
		// A change on another flag must not call fn; the StreamingV2 change must.
		change(t, s, context.Background(), "other-flag", Change{Enabled: ptr(true)}, "a")
		synctest.Wait()
		select {
		case c := <-calls:
			t.Fatalf("call %+v after another flag's change", c)
		default:
		}
		change(t, s, context.Background(), StreamingV2, Change{Enabled: ptr(false)}, "a")
		synctest.Wait()
		select {
		case c := <-calls:
			if !c.was || c.now {
				t.Fatalf("call %+v, want on -> off", c)
			}
		default:
			t.Fatal("fn not called")
		}
		synctest.Wait()
		select {
		case c := <-calls:
			t.Fatalf("extra call %+v", c)
		default:
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch = %v", err)
		}

		// Closing the source ends Watch with ErrClosed.
		go func() { done <- Watch(context.Background(), s, StreamingV2, func(_, _ *Evaluator) {}) }()
		synctest.Wait()
		s.Close()
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("Watch after Close = %v", err)
		}
	})
}
