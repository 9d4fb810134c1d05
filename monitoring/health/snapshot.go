package health

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Limits on snapshots read from the bucket.
const (
	// MaxSnapshotBytes is the largest encoded snapshot accepted.
	MaxSnapshotBytes = 512 << 10
	// MaxInstanceName is the longest instance name accepted.
	MaxInstanceName = 128
	// MaxReasons bounds each reason map (drops, disconnects, refusals, ...) of a snapshot.
	MaxReasons = 64
)

// Errors from DecodeSnapshot and Validate.
var (
	ErrSnapshotTooLarge = errors.New("health: snapshot too large")
	ErrBadSnapshot      = errors.New("health: bad snapshot")
)

// Breaker states reported in InstanceSnapshot.Breaker.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half_open"
)

// InstanceSnapshot is one instance's figures at one moment. Its JSON fields up to
// WriteLatencyMs are exactly the engine's /v2/realtime/metrics body, so that body
// decodes straight into it (DecodeEngineMetrics); the fields after it are added by the
// process that publishes (breaker, long-poll, histograms, browser health). Counters are
// cumulative since the instance started.
type InstanceSnapshot struct {
	Instance          string            `json:"instance"`
	Time              int64             `json:"time"` // unix ms, the instance's clock
	UptimeSeconds     float64           `json:"uptimeSeconds"`
	ActiveConnections uint64            `json:"activeConnections"`
	ConnectionsTotal  uint64            `json:"connectionsTotal"`
	Subscriptions     uint64            `json:"subscriptions"`
	EventsPublished   uint64            `json:"eventsPublished"`
	EventsDispatched  uint64            `json:"eventsDispatched"`
	EventsDelivered   uint64            `json:"eventsDelivered"`
	EventsReplayed    uint64            `json:"eventsReplayed"`
	FramesWritten     uint64            `json:"framesWritten"`
	EventsPerFrame    float64           `json:"eventsPerFrame"`
	BytesRaw          uint64            `json:"bytesRaw"`
	BytesWire         uint64            `json:"bytesWire"`
	Drops             map[string]uint64 `json:"drops"`
	Disconnects       map[string]uint64 `json:"disconnects"`
	SlowDisconnects   uint64            `json:"slowDisconnects"`
	Recoveries        map[string]uint64 `json:"recoveries"`
	Refusals          map[string]uint64 `json:"refusals"`
	HealthReports     uint64            `json:"healthReports"`
	WriteLatencyMs    Percentiles       `json:"writeLatencyMs"`

	// Breaker is the bus circuit breaker's state (Breaker* constants; empty = unknown).
	Breaker string `json:"breaker,omitempty"`
	// LongPollRequests counts requests served by the long-polling fallback.
	LongPollRequests uint64 `json:"longPollRequests"`
	// WriteLatency is the server's enqueue-to-write distribution, when the engine
	// records one (then fleet percentiles are exact merges; otherwise WriteLatencyMs
	// summaries are combined approximately).
	WriteLatency *Histogram `json:"writeLatency,omitempty"`
	// Client is the browsers' reported health.
	Client ClientSummary `json:"client"`
}

// DecodeEngineMetrics decodes the engine's /v2/realtime/metrics JSON into a snapshot
// and validates it. The caller fills in the fields the engine does not report.
func DecodeEngineMetrics(b []byte) (InstanceSnapshot, error) {
	return DecodeSnapshot(b)
}

// DecodeSnapshot decodes and validates one encoded snapshot (bucket value).
func DecodeSnapshot(b []byte) (InstanceSnapshot, error) {
	var s InstanceSnapshot
	if len(b) > MaxSnapshotBytes {
		return s, fmt.Errorf("%w: %d bytes, limit %d", ErrSnapshotTooLarge, len(b), MaxSnapshotBytes)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return InstanceSnapshot{}, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	if err := s.Validate(); err != nil {
		return InstanceSnapshot{}, err
	}
	return s, nil
}

// Encode returns the JSON encoding of s (a bucket value).
func (s *InstanceSnapshot) Encode() ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot %s: %w", s.Instance, err)
	}
	if len(b) > MaxSnapshotBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrSnapshotTooLarge, len(b), MaxSnapshotBytes)
	}
	return b, nil
}

// Validate checks the instance name and the size of every reason map.
func (s *InstanceSnapshot) Validate() error {
	if s.Instance == "" || len(s.Instance) > MaxInstanceName {
		return fmt.Errorf("%w: instance name must be 1..%d bytes", ErrBadSnapshot, MaxInstanceName)
	}
	for name, m := range map[string]map[string]uint64{
		"drops": s.Drops, "disconnects": s.Disconnects, "recoveries": s.Recoveries,
		"refusals": s.Refusals, "client.rejected": s.Client.Rejected, "client.transports": s.Client.Transports,
	} {
		if len(m) > MaxReasons {
			return fmt.Errorf("%w: %s has %d reasons, limit %d", ErrBadSnapshot, name, len(m), MaxReasons)
		}
	}
	return nil
}

// Key is the bucket key for an instance: the name with every byte outside
// [A-Za-z0-9_-] replaced by '_'.
func Key(instance string) string {
	var b strings.Builder
	for i := 0; i < len(instance); i++ {
		c := instance[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}
