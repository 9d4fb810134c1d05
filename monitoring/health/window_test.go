package health

import (
	"sync"
	"testing"
	"time"

	"encore.app/realtime/protocol"
)

func TestWindowForgetsOldSlots(t *testing.T) {
	clk := newFakeClock()
	w := NewWindow(60*time.Second, 6, clk.Now)
	w.Record(1000) // old
	clk.Advance(30 * time.Second)
	w.Record(10)
	if got := w.Snapshot().Count(); got != 2 {
		t.Fatalf("count %d after 30s, want 2", got)
	}
	clk.Advance(40 * time.Second) // the first value is now 70s old
	s := w.Snapshot()
	if s.Count() != 1 || !within(s.Max(), 10) {
		t.Fatalf("count %d max %v after 70s, want only the 10ms value", s.Count(), s.Max())
	}
	clk.Advance(time.Hour)
	if got := w.Snapshot().Count(); got != 0 {
		t.Fatalf("count %d after an hour, want 0", got)
	}
}

func TestClientHealthObserve(t *testing.T) {
	clk := newFakeClock()
	c := NewClientHealth(time.Minute, 6, clk.Now)
	for i := 1; i <= 100; i++ {
		c.Observe(&protocol.HealthReport{RTTMillis: float64(i), LatencyP50Millis: 20, LatencyP99Millis: 80, Transport: "ws"})
	}
	if c.Observe(nil) || c.Observe(&protocol.HealthReport{RTTMillis: -1}) {
		t.Fatal("bad reports accepted")
	}
	s := c.Summary()
	if s.Reports != 100 || s.Transports["ws"] != 100 {
		t.Fatalf("reports %d transports %v", s.Reports, s.Transports)
	}
	if s.Rejected[RejectNil] != 1 || s.Rejected[RejectBadValue] != 1 {
		t.Fatalf("rejected %v", s.Rejected)
	}
	if !within(s.RTT.Quantile(0.5), 50) || !within(s.LatencyP99.Quantile(0.5), 80) {
		t.Fatalf("rtt p50 %v latency p99 %v", s.RTT.Quantile(0.5), s.LatencyP99.Quantile(0.5))
	}
}

func TestClientHealthTransportsBounded(t *testing.T) {
	c := NewClientHealth(time.Minute, 6, nil)
	for i := 0; i < 100; i++ {
		c.Observe(&protocol.HealthReport{Transport: string(rune('a' + i%26))})
	}
	s := c.Summary()
	if len(s.Transports) > maxTransports+1 {
		t.Fatalf("%d transports kept, limit %d (+other)", len(s.Transports), maxTransports)
	}
	if s.Transports["other"] == 0 {
		t.Fatal("overflow not counted under other")
	}
}

func TestClientHealthConcurrent(t *testing.T) {
	c := NewClientHealth(time.Minute, 6, nil)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				c.Observe(&protocol.HealthReport{RTTMillis: float64(i), LatencyP50Millis: 1, LatencyP99Millis: 2})
				if i%100 == 0 {
					_ = c.Summary()
				}
			}
		}()
	}
	wg.Wait()
	s := c.Summary()
	if s.Reports != 4000 || s.RTT.Count() != 4000 {
		t.Fatalf("reports %d rtt count %d, want 4000", s.Reports, s.RTT.Count())
	}
}

// BenchmarkWindowRecordParallel is the cost of recording one latency from many goroutines
// (as an engine's connection writers would).
func BenchmarkWindowRecordParallel(b *testing.B) {
	w := NewWindow(time.Minute, 6, nil)
	b.RunParallel(func(pb *testing.PB) {
		v := 0.1
		for pb.Next() {
			w.Record(v)
			v += 0.01
		}
	})
}
