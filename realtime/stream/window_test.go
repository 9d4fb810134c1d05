package stream

import (
	"sync/atomic"
	"testing"
	"time"
)

func TestBatchGovernorWidensUnderLoad(t *testing.T) {
	var frames atomic.Uint64
	cfg := Config{BatchWindow: 20 * time.Millisecond, BatchWindowMax: 50 * time.Millisecond, FrameBudget: 60000}
	g := newBatchGovernor(&cfg, &frames)
	period := time.Second
	steps := []struct {
		frames uint64 // written during the period
		want   time.Duration
	}{
		{1000, 20 * time.Millisecond},   // 20 busy connections: minimum
		{250000, 50 * time.Millisecond}, // 5,000 busy at 20 ms: 83 ms wanted, capped at 50
		{100000, 50 * time.Millisecond}, // the same 5,000 at 50 ms: 83 ms wanted, stays at the cap
		{40000, 33 * time.Millisecond},  // 2,000 busy at 50 ms: 33 ms fits the budget
		{60000, 33 * time.Millisecond},  // 2,000 at 33 ms: stable
		{0, 20 * time.Millisecond},      // idle: back to the minimum
	}
	for i, s := range steps {
		frames.Add(s.frames)
		g.tick(period)
		if got := g.current(); got.Round(time.Millisecond) != s.want {
			t.Fatalf("step %d: window %v, want %v", i, got, s.want)
		}
	}
	fixed := newBatchGovernor(&Config{BatchWindow: 20 * time.Millisecond, BatchWindowMax: 20 * time.Millisecond, FrameBudget: 1}, &frames)
	frames.Add(1e9)
	fixed.tick(period)
	if fixed.current() != 20*time.Millisecond {
		t.Fatalf("fixed window moved to %v", fixed.current())
	}
}
