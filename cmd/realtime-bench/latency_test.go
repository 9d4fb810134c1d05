package main

import (
	"math"
	"testing"
)

func TestLatencyPercentiles(t *testing.T) {
	a, b := newLatencies(), newLatencies()
	// 1..1000 ms split over two recorders, as client goroutines do.
	for i := 1; i <= 1000; i++ {
		l := a
		if i%2 == 0 {
			l = b
		}
		l.recordNanos(0, int64(i)*1e6)
	}
	b.recordNanos(10, 5) // receive before send: not recorded
	a.merge(b)
	s := a.summary()
	if s.Count != 1000 || a.negative != 1 {
		t.Fatalf("count %d negative %d", s.Count, a.negative)
	}
	for _, c := range []struct{ got, want float64 }{{s.P50, 500}, {s.P95, 950}, {s.P99, 990}, {s.Max, 1000}} {
		if math.Abs(c.got-c.want)/c.want > 0.02 {
			t.Errorf("got %v want %v (within 2%%)", c.got, c.want)
		}
	}
	if (newLatencies().summary() != LatencySummary{}) {
		t.Error("empty summary not zero")
	}
}
