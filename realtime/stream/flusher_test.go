package stream

import (
	"testing"
	"time"

	"encore.app/internal/testutil"
)

// Each lane's workers take only from their lane, in FIFO order: the slow lane's worker
// never a fast entry, the others never a slow one; both lanes rewind when empty.
func TestFlusherLanes(t *testing.T) {
	f := newFlusher(1)
	if f.park != nil {
		t.Cleanup(f.park.close)
	}
	fast, slow := &Client{}, &Client{}
	now := time.Now().UnixNano()
	for i := range 3 {
		f.slow.q = append(f.slow.q, flushEntry{c: slow, gen: uint64(i), at: now})
		f.fast.q = append(f.fast.q, flushEntry{c: fast, gen: uint64(i), at: now})
	}
	for _, l := range []*lane{&f.fast, &f.slow} {
		slowLane := l == &f.slow
		for i := range 3 {
			if l.empty() {
				t.Fatalf("slow lane %v: entry %d not available", slowLane, i)
			}
			e := f.popLocked(l)
			if (e.c == slow) != slowLane || e.gen != uint64(i) {
				t.Fatalf("slow lane %v: got gen %d of the %v lane, want gen %d of its own", slowLane, e.gen, e.c == slow, i)
			}
		}
		if !l.empty() {
			t.Fatalf("slow lane %v: an entry left", slowLane)
		}
	}
	if got := f.slowTurns.Load(); got != 3 {
		t.Errorf("%d slow-lane turns counted, want 3", got)
	}
	if f.fast.head != 0 || f.slow.head != 0 || len(f.fast.q) != 0 || len(f.slow.q) != 0 {
		t.Errorf("lanes not rewound when empty: fast %d/%d, slow %d/%d", f.fast.head, len(f.fast.q), f.slow.head, len(f.slow.q))
	}
}

// stop returns once both lanes are drained: the slow lane's one worker runs every
// entry of it first.
func TestFlusherStopDrainsSlowLane(t *testing.T) {
	f := newFlusher(4)
	f.startOnce(time.Hour, func(time.Time) {})
	f.mu.Lock()
	for range 2000 {
		c := &Client{} // at generation 0: its writer does nothing for an entry at 1
		c.idle.L = &c.mu
		f.slow.q = append(f.slow.q, flushEntry{c: c, gen: 1, at: time.Now().UnixNano()})
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
