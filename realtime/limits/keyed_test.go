package limits

import (
	"fmt"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *fakeClock               { return &fakeClock{t: time.Unix(1_800_000_000, 0)} }
func allowN(l *KeyedLimiter, key string, n int) (passed int) {
	for range n {
		if ok, _ := l.Allow(key); ok {
			passed++
		}
	}
	return passed
}

// A key gets its burst, then one attempt per 1/rate; the refusal says how long to wait;
// keys do not share buckets.
func TestKeyedLimiterBurstAndRetryAfter(t *testing.T) {
	clk := newClock()
	l := NewKeyedLimiter(2, 5, 0, clk.now) // 2/s, burst 5
	if got := allowN(l, "a", 10); got != 5 {
		t.Fatalf("burst: %d passed, want 5", got)
	}
	ok, wait := l.Allow("a")
	if ok || wait <= 0 || wait > 500*time.Millisecond {
		t.Fatalf("after burst: ok=%v wait=%v, want refused with wait in (0, 500ms]", ok, wait)
	}
	if got := allowN(l, "b", 5); got != 5 {
		t.Fatalf("other key: %d passed", got)
	}
	clk.add(wait)
	if ok, _ := l.Allow("a"); !ok {
		t.Fatal("refused after waiting the Retry-After")
	}
	if ok, _ := l.Allow("a"); ok {
		t.Fatal("a second attempt passed at once")
	}
	clk.add(10 * time.Second)
	if got := allowN(l, "a", 10); got != 5 {
		t.Fatalf("refilled: %d passed, want 5", got)
	}
}

// The map is bounded by 2*MaxKeys whatever the number of keys, and forgets idle keys.
func TestKeyedLimiterBoundedAndExpiring(t *testing.T) {
	clk := newClock()
	l := NewKeyedLimiter(1, 1, 100, clk.now)
	for i := range 10_000 {
		l.Allow(fmt.Sprint("ip-", i))
		if n := l.Len(); n > 200 {
			t.Fatalf("after %d keys the map holds %d buckets, bound 200", i+1, n)
		}
	}
	clk.add(3 * time.Second) // two refill periods (1s each)
	l.Allow("fresh")
	if n := l.Len(); n != 1 {
		t.Fatalf("after two idle periods: %d buckets, want 1", n)
	}
	if l.forcedRotations.Load() == 0 {
		t.Fatal("no forced rotation counted")
	}
}

// A key in use survives rotations (moved to the current generation), so its bucket
// keeps its state: no fresh burst by waiting for a rotation.
func TestKeyedLimiterKeepsActiveKeys(t *testing.T) {
	clk := newClock()
	l := NewKeyedLimiter(0.5, 2, 0, clk.now) // period 4s
	if got := allowN(l, "u", 3); got != 2 {
		t.Fatalf("burst %d", got)
	}
	for range 5 {
		clk.add(1900 * time.Millisecond)
		l.Allow("u")
	}
	// Over 9.5s at 0.5/s about 4-5 tokens came; the bucket never held more than 2.
	clk.add(0)
	if got := allowN(l, "u", 5); got > 1 {
		t.Fatalf("after rotations %d passed at once, want at most 1", got)
	}
}
