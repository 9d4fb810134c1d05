package stream

import (
	"testing"
	"time"

	"encore.app/internal/testutil"
)

// The fast lane goes first; the slow lane runs when the fast one is empty, and every
// other time once its oldest entry waited slowLaneAge, one entry at a time.
func TestFlusherLanes(t *testing.T) {
	f := newFlusher(1)
	if f.park != nil {
		t.Cleanup(f.park.close)
	}
	fast, slow := &Client{}, &Client{}
	now := time.Now().UnixNano()
	push := func(c *Client, at int64, n int) {
		for range n {
			if c == slow {
				f.slow = append(f.slow, flushEntry{c: c, at: at})
			} else {
				f.ready = append(f.ready, flushEntry{c: c, at: at})
			}
		}
	}
	order := func(n int) (s string) {
		for range n {
			e, isFast := f.popLocked()
			if isFast != (e.c == fast) {
				t.Fatalf("popLocked reports fast=%v for the wrong lane", isFast)
			}
			if isFast {
				s += "F"
				continue
			}
			s += "S"
			if f.canPopLocked() && f.rhead == len(f.ready) {
				t.Fatal("a second slow-lane entry may run while one runs")
			}
			f.slowDone()
		}
		return s
	}
	push(slow, now, 2)
	push(fast, now, 3)
	if got := order(5); got != "FFFSS" {
		t.Errorf("fresh slow entries: order %s, want FFFSS", got)
	}
	old := now - int64(2*slowLaneAge)
	push(slow, old, 3)
	push(fast, now, 4)
	if got := order(7); got != "FSFSFSF" {
		t.Errorf("aged slow entries: order %s, want FSFSFSF", got)
	}
	if got := f.slowTurns.Load(); got != 5 {
		t.Errorf("%d slow-lane turns counted, want 5", got)
	}
	if f.rhead != 0 || f.shead != 0 || len(f.ready) != 0 || len(f.slow) != 0 {
		t.Errorf("lanes not rewound when empty: ready %d/%d, slow %d/%d", f.rhead, len(f.ready), f.shead, len(f.slow))
	}
}

// stop returns once both lanes are drained, though only one worker at a time may run
// the slow lane and the others wait for it.
func TestFlusherStopDrainsSlowLane(t *testing.T) {
	f := newFlusher(4)
	f.startOnce(time.Hour, func(time.Time) {})
	f.mu.Lock()
	for range 2000 {
		c := &Client{} // at generation 0: its writer does nothing for an entry at 1
		c.idle.L = &c.mu
		f.slow = append(f.slow, flushEntry{c: c, gen: 1, at: time.Now().UnixNano()})
	}
	f.mu.Unlock()
	// The workers wake with stop: the lane is drained after stop was asked for.
	done := make(chan struct{})
	go func() { f.stop(); close(done) }()
	testutil.Receive(t, "stop", done)
	if n := f.slowTurns.Load(); n != 2000 {
		t.Errorf("%d slow-lane entries run before stop returned, want 2000", n)
	}
}
