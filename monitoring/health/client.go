package health

import (
	"math"
	"sync"
	"time"

	"encore.app/realtime/protocol"
)

// Reasons a browser health report is not recorded (ClientHealth.Rejected).
const (
	RejectNil      = "nil_report"
	RejectBadValue = "bad_value" // negative, NaN or infinite figure
)

// ClientHealth turns browsers' health frames into histograms over a sliding window:
// round-trip time, and each client's own publish-to-receive p50 and p99. The stream
// engine calls Observe for every health frame; the snapshot function reads Summary.
// Safe for concurrent use.
type ClientHealth struct {
	rtt, p50, p99 *Window

	mu         sync.Mutex // guards the counters below
	reports    uint64
	rejected   map[string]uint64 // bounded: keys are the Reject* constants
	transports map[string]uint64 // bounded: at most maxTransports keys, others under "other"
}

const maxTransports = 8

// NewClientHealth records over the last span (split in slots) with the given clock (nil: time.Now).
func NewClientHealth(span time.Duration, slots int, now func() time.Time) *ClientHealth {
	return &ClientHealth{
		rtt:        NewWindow(span, slots, now),
		p50:        NewWindow(span, slots, now),
		p99:        NewWindow(span, slots, now),
		rejected:   map[string]uint64{},
		transports: map[string]uint64{},
	}
}

func badFigure(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) || v < 0 }

// Observe records one health report. A report with a bad figure is rejected whole and
// counted under its reason; it reports whether r was recorded.
func (c *ClientHealth) Observe(r *protocol.HealthReport) bool {
	if r == nil {
		c.reject(RejectNil)
		return false
	}
	if badFigure(r.RTTMillis) || badFigure(r.LatencyP50Millis) || badFigure(r.LatencyP99Millis) {
		c.reject(RejectBadValue)
		return false
	}
	c.rtt.Record(r.RTTMillis)
	// A tab that received nothing yet reports zeros: no latency was measured, and
	// recording them would pull the fleet's median to 0.
	if r.EventsReceived > 0 || r.LatencyP50Millis > 0 || r.LatencyP99Millis > 0 {
		c.p50.Record(r.LatencyP50Millis)
		c.p99.Record(r.LatencyP99Millis)
	}
	c.mu.Lock()
	c.reports++
	t := r.Transport
	if t == "" {
		t = "unknown"
	}
	if _, ok := c.transports[t]; !ok && len(c.transports) >= maxTransports {
		t = "other"
	}
	c.transports[t]++
	c.mu.Unlock()
	return true
}

func (c *ClientHealth) reject(reason string) {
	c.mu.Lock()
	c.rejected[reason]++
	c.mu.Unlock()
}

// Summary returns the counters (cumulative) and the windowed histograms.
func (c *ClientHealth) Summary() ClientSummary {
	s := ClientSummary{RTT: c.rtt.Snapshot(), LatencyP50: c.p50.Snapshot(), LatencyP99: c.p99.Snapshot()}
	c.mu.Lock()
	s.Reports = c.reports
	s.Rejected = copyCounts(c.rejected)
	s.Transports = copyCounts(c.transports)
	c.mu.Unlock()
	return s
}

func copyCounts(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
