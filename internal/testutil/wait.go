package testutil

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"
)

// Patience is how long a wait lasts before it fails the test: one minute, that is
// roughly ten times what the slowest wait of the suite takes under -race on a loaded
// 2-core machine. TESTUTIL_PATIENCE (a Go duration) overrides it, e.g. on a machine
// even slower than that.
var Patience = patience()

func patience() time.Duration {
	if s := os.Getenv("TESTUTIL_PATIENCE"); s != "" {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			return d
		}
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return time.Minute
}

// pollEvery is the pause between two checks of a condition.
const pollEvery = 10 * time.Millisecond

// WaitFor polls cond until it holds; after Patience it fails the test (Fatal) naming
// what it waited for. cond runs on the caller's goroutine.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitWithin(t, Patience, what, cond)
}

// WaitWithin is WaitFor with an explicit deadline d, for the few waits that are known to
// take longer than Patience allows (a whole cluster restarting, hundreds of clients
// resuming through JetStream). d is a bound against a hung test, never a speed budget.
func WaitWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Eventually(context.Background(), d, cond); err != nil {
		t.Fatalf("waited %v for %s: %v", d, what, err)
	}
}

// Eventually polls cond until it holds (nil), ctx ends or d passes (the error says
// which). For goroutines other than the test's, which must not call t.Fatal.
func Eventually(ctx context.Context, d time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			if cond() {
				return nil
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Context returns a context that ends after Patience or when the test ends, whichever is
// first: the bound of one test's network calls.
func Context(t testing.TB) context.Context {
	t.Helper()
	return ContextWithin(t, Patience)
}

// ContextWithin is Context with an explicit bound.
func ContextWithin(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Receive waits for a value on ch; after Patience it fails the test naming what it
// waited for. A closed channel yields its zero value.
func Receive[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	tm := time.NewTimer(Patience)
	defer tm.Stop()
	select {
	case v := <-ch:
		return v
	case <-tm.C:
		t.Fatalf("waited %v for %s", Patience, what)
		var zero T
		return zero
	}
}
