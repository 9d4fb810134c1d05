// Package stats holds the latency distribution every percentile of the project comes
// from (Histogram, a DDSketch with 1% relative accuracy, mergeable across instances)
// and the browser health summary of an instance (ClientSummary). The engine's
// snapshot (stream.Snapshot, which is also the fleet record monitoring/health
// aggregates and the figures cmd/realtime-bench reads) carries both.
//
// A leaf: it imports the standard library and DDSketch only.
package stats

// ClientSummary is what browsers reported about their connections to one instance
// (monitoring/health.ClientHealth builds it).
type ClientSummary struct {
	Reports    uint64            `json:"reports"`
	Rejected   map[string]uint64 `json:"rejected,omitempty"`
	Transports map[string]uint64 `json:"transports,omitempty"`
	// RTT is the distribution of reported round-trip times over the window.
	RTT *Histogram `json:"rtt,omitempty"`
	// LatencyP50 and LatencyP99 are distributions of each client's own publish-to-receive
	// median and 99th percentile over the window.
	LatencyP50 *Histogram `json:"latencyP50,omitempty"`
	LatencyP99 *Histogram `json:"latencyP99,omitempty"`
}
