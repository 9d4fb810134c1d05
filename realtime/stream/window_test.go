package stream

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestBatchGovernorWidensUnderLoad(t *testing.T) {
	var frames atomic.Uint64
	var wait atomic.Int64
	cfg := Config{BatchWindow: 20 * time.Millisecond, BatchWindowMax: 50 * time.Millisecond, FrameBudget: 60000}
	g := newBatchGovernor(&cfg, &frames, &wait)
	period := time.Second
	steps := []struct {
		frames uint64        // written during the period
		wait   time.Duration // longest FIFO wait during the period
		want   time.Duration
	}{
		{1000, 0, 0},                                          // a light load: no window at all
		{40000, time.Millisecond, 0},                          // under the budget, writers keep up: still none
		{500000, 0, 20 * time.Millisecond},                    // 5,000 busy connections: the window opens
		{250000, 0, 50 * time.Millisecond},                    // 5,000 at 20 ms: 83 ms wanted, capped at 50
		{100000, 0, 50 * time.Millisecond},                    // the same 5,000 at 50 ms: stays at the cap
		{40000, 0, 33 * time.Millisecond},                     // 2,000 busy at 50 ms: 33 ms fits the budget
		{60000, 0, 33 * time.Millisecond},                     // 2,000 at 33 ms: stable
		{60000, 15 * time.Millisecond, 33 * time.Millisecond}, // the burst drained within half the window: not behind
		{36000, 20 * time.Millisecond, 33 * time.Millisecond}, // 1,200 busy (20 ms fits) but the burst took over half: held
		{36000, 10 * time.Millisecond, 20 * time.Millisecond}, // within half: narrows to the budget's 20 ms
		{50000, 15 * time.Millisecond, 20 * time.Millisecond}, // over half, within the window: held
		{10000, 40 * time.Millisecond, 40 * time.Millisecond}, // writers behind (waited over the window): twice as wide
		{10000, 45 * time.Millisecond, 50 * time.Millisecond}, // still behind: capped
		{0, 0, 0},                        // idle: closed again
		{1000, 10 * time.Millisecond, 0}, // writers late once (a GC pause): stays closed
		{1000, 0, 0},                     // on time again
		{1000, 10 * time.Millisecond, 0}, // late once more: still closed
		{1000, 10 * time.Millisecond, 20 * time.Millisecond}, // behind two ticks in a row: opens
		{1000, 2 * time.Millisecond, 0},                      // under half the short wait: closed again
	}
	for i, s := range steps {
		frames.Add(s.frames)
		wait.Store(int64(s.wait))
		g.tick(period)
		if got := g.current(); got.Round(time.Millisecond) != s.want {
			t.Fatalf("step %d: window %v, want %v", i, got, s.want)
		}
	}
	fixed := newBatchGovernor(&Config{BatchWindow: 20 * time.Millisecond, BatchWindowMax: 20 * time.Millisecond, FrameBudget: 1}, &frames, &wait)
	frames.Add(1e9)
	for range 3 {
		fixed.tick(period)
		if fixed.current() != 20*time.Millisecond {
			t.Fatalf("fixed window moved to %v", fixed.current())
		}
	}
}
