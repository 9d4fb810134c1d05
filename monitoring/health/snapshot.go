package health

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"encore.app/realtime/stats"
	"encore.app/realtime/stream"
)

// Limits on snapshots read from the bucket.
const (
	// MaxSnapshotBytes is the largest encoded snapshot accepted.
	MaxSnapshotBytes = 512 << 10
	// MaxInstanceName is the longest instance name accepted.
	MaxInstanceName = 128
	// MaxReasons bounds each reason map (drops, disconnects, refusals, ...) of a snapshot.
	MaxReasons = 64
	// MaxChannels bounds the busiest channels a snapshot lists (stream.MaxTopChannels),
	// MaxChannelName each name.
	MaxChannels    = stream.MaxTopChannels
	MaxChannelName = 1024
)

// Errors from DecodeSnapshot and Validate.
var (
	ErrSnapshotTooLarge = errors.New("health: snapshot too large")
	ErrBadSnapshot      = errors.New("health: bad snapshot")
)

// InstanceSnapshot is one instance's figures at one moment: the engine's snapshot
// (the body of /v2/realtime/metrics) with the browsers' health the server adds
// (Client). Counters are cumulative since the instance started.
type InstanceSnapshot = stream.Snapshot

// Histogram and Percentiles are the latency types of realtime/stats, where every
// percentile of the project comes from.
type (
	Histogram     = stats.Histogram
	Percentiles   = stats.Percentiles
	ClientSummary = stats.ClientSummary
)

// NewHistogram returns an empty Histogram.
func NewHistogram() *Histogram { return stats.NewHistogram() }

// DecodeSnapshot decodes and validates one encoded snapshot (bucket value).
func DecodeSnapshot(b []byte) (InstanceSnapshot, error) {
	var s InstanceSnapshot
	if len(b) > MaxSnapshotBytes {
		return s, fmt.Errorf("%w: %d bytes, limit %d", ErrSnapshotTooLarge, len(b), MaxSnapshotBytes)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return InstanceSnapshot{}, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	if err := ValidateSnapshot(&s); err != nil {
		return InstanceSnapshot{}, err
	}
	return s, nil
}

// EncodeSnapshot returns the JSON encoding of s (a bucket value).
func EncodeSnapshot(s *InstanceSnapshot) ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encode snapshot %s: %w", s.Instance, err)
	}
	if len(b) > MaxSnapshotBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrSnapshotTooLarge, len(b), MaxSnapshotBytes)
	}
	return b, nil
}

// ValidateSnapshot checks the instance name and the size of every reason map.
func ValidateSnapshot(s *InstanceSnapshot) error {
	if s.Instance == "" || len(s.Instance) > MaxInstanceName {
		return fmt.Errorf("%w: instance name must be 1..%d bytes", ErrBadSnapshot, MaxInstanceName)
	}
	for name, m := range map[string]map[string]uint64{
		"drops": s.Drops, "disconnects": s.Disconnects, "recoveries": s.Recoveries,
		"refusals": s.Refusals, "longPollRefusals": s.LongPollRefusals, "transportSwitches": s.TransportSwitches,
		"client.rejected": s.Client.Rejected, "client.transports": s.Client.Transports,
	} {
		if len(m) > MaxReasons {
			return fmt.Errorf("%w: %s has %d reasons, limit %d", ErrBadSnapshot, name, len(m), MaxReasons)
		}
	}
	if c := s.Channels; c != nil {
		if len(c.Top) > MaxChannels {
			return fmt.Errorf("%w: %d channels listed, limit %d", ErrBadSnapshot, len(c.Top), MaxChannels)
		}
		for _, ch := range c.Top {
			if ch.Channel == "" || len(ch.Channel) > MaxChannelName || ch.Subscribers < 0 || ch.Polls < 0 {
				return fmt.Errorf("%w: bad channel entry %.64q", ErrBadSnapshot, ch.Channel)
			}
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
