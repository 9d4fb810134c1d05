package main

import (
	"encore.app/realtime/stats"
)

// latencies is one recorder's publish-to-receive distribution (milliseconds), a DDSketch
// with 1% relative accuracy (monitoring/stats.Histogram). Not safe for concurrent use:
// each client goroutine owns one and they are merged at the end.
type latencies struct {
	h        *stats.Histogram
	negative uint64 // receive before send (clock skew between hosts): not recorded
}

func newLatencies() *latencies { return &latencies{h: stats.NewHistogram()} }

// recordNanos adds one latency given the send and receive times in unix nanoseconds.
func (l *latencies) recordNanos(sent, recv int64) {
	d := recv - sent
	if d < 0 {
		l.negative++
		return
	}
	l.h.Record(float64(d) / 1e6)
}

func (l *latencies) merge(o *latencies) {
	_ = l.h.Merge(o.h)
	l.negative += o.negative
}

// LatencySummary is a distribution in milliseconds.
type LatencySummary struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50Ms"`
	P95   float64 `json:"p95Ms"`
	P99   float64 `json:"p99Ms"`
	Max   float64 `json:"maxMs"`
}

func (l *latencies) summary() LatencySummary {
	n := l.h.Count()
	if n == 0 {
		return LatencySummary{}
	}
	return LatencySummary{Count: n, P50: l.h.Quantile(0.50), P95: l.h.Quantile(0.95),
		P99: l.h.Quantile(0.99), Max: l.h.Max()}
}
