package stats

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/DataDog/sketches-go/ddsketch"
	"github.com/DataDog/sketches-go/ddsketch/mapping"
	"github.com/DataDog/sketches-go/ddsketch/store"
)

// Histogram parameters. Values are milliseconds.
const (
	// RelativeAccuracy of every quantile a Histogram returns (1%).
	RelativeAccuracy = 0.01
	// MaxBins bounds a Histogram's memory: past it the lowest bins collapse (the
	// accuracy of the lowest quantiles is given up, never of p50/p99).
	MaxBins = 2048
	// MaxLatencyMillis is the largest value recorded; larger values are clamped to it.
	MaxLatencyMillis = 10 * 60 * 1000
	// maxEncodedHistogram bounds what UnmarshalJSON accepts.
	maxEncodedHistogram = 64 << 10
)

// ErrBadHistogram is returned when an encoded histogram cannot be decoded.
var ErrBadHistogram = errors.New("stats: bad histogram encoding")

var latencyMapping = mustMapping()

func mustMapping() mapping.IndexMapping {
	m, err := mapping.NewLogarithmicMapping(RelativeAccuracy)
	if err != nil {
		panic(err)
	}
	return m
}

func boundedStore() store.Store { return store.NewCollapsingLowestDenseStore(MaxBins) }

// Histogram is a mergeable latency distribution in milliseconds (a DDSketch with exact
// count, sum, min and max). The zero value is not usable: call NewHistogram. A Histogram
// is not safe for concurrent use; Window is the concurrent recorder.
//
// JSON form: a base64 string of the sketch's binary encoding.
type Histogram struct {
	s *ddsketch.DDSketchWithExactSummaryStatistics
}

// NewHistogram returns an empty Histogram.
func NewHistogram() *Histogram {
	return &Histogram{s: ddsketch.NewDDSketchWithExactSummaryStatistics(latencyMapping, boundedStore)}
}

// RecordN adds n values of ms at once (see Record).
func (h *Histogram) RecordN(ms float64, n uint64) bool {
	if math.IsNaN(ms) || ms < 0 || n == 0 {
		return false
	}
	return h.s.AddWithCount(min(ms, MaxLatencyMillis), float64(n)) == nil
}

// Record adds one value in milliseconds. Negative values and NaN are ignored (and
// reported as false); values above MaxLatencyMillis are clamped.
func (h *Histogram) Record(ms float64) bool {
	if math.IsNaN(ms) || ms < 0 {
		return false
	}
	if ms > MaxLatencyMillis {
		ms = MaxLatencyMillis
	}
	return h.s.Add(ms) == nil
}

// Merge adds every value of o to h. o is unchanged; a nil o is a no-op.
func (h *Histogram) Merge(o *Histogram) error {
	if o == nil || o.s == nil {
		return nil
	}
	return h.s.MergeWith(o.s)
}

// Copy returns an independent copy of h.
func (h *Histogram) Copy() *Histogram { return &Histogram{s: h.s.Copy()} }

// Count is the number of values recorded.
func (h *Histogram) Count() uint64 {
	if h == nil || h.s == nil {
		return 0
	}
	return uint64(math.Round(h.s.GetCount()))
}

// Quantile returns the value at quantile q (0..1) within RelativeAccuracy, or 0 when empty.
func (h *Histogram) Quantile(q float64) float64 {
	if h.Count() == 0 {
		return 0
	}
	v, err := h.s.GetValueAtQuantile(q)
	if err != nil {
		return 0
	}
	return v
}

// Max returns the exact largest value recorded, or 0 when empty.
func (h *Histogram) Max() float64 {
	if h.Count() == 0 {
		return 0
	}
	v, err := h.s.GetMaxValue()
	if err != nil {
		return 0
	}
	return v
}

// Summary returns the usual percentiles.
func (h *Histogram) Summary() Percentiles {
	return Percentiles{
		P50:   h.Quantile(0.50),
		P90:   h.Quantile(0.90),
		P99:   h.Quantile(0.99),
		Max:   h.Max(),
		Count: h.Count(),
	}
}

// MarshalJSON encodes h as a base64 string.
func (h *Histogram) MarshalJSON() ([]byte, error) {
	var b []byte
	h.s.Encode(&b, false)
	return json.Marshal(base64.StdEncoding.EncodeToString(b))
}

// UnmarshalJSON decodes what MarshalJSON produced. Memory stays bounded (MaxBins)
// whatever the input.
func (h *Histogram) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("%w: %v", ErrBadHistogram, err)
	}
	if base64.StdEncoding.DecodedLen(len(s)) > maxEncodedHistogram {
		return fmt.Errorf("%w: %d bytes encoded, limit %d", ErrBadHistogram, len(s), maxEncodedHistogram)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadHistogram, err)
	}
	d, err := decodeSketch(b)
	if err != nil {
		return err
	}
	h.s = d
	return nil
}

func decodeSketch(b []byte) (s *ddsketch.DDSketchWithExactSummaryStatistics, err error) {
	defer func() {
		// The library trusts its input; a corrupt encoding must not take the aggregator down.
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("%w: %v", ErrBadHistogram, r)
		}
	}()
	d, err := ddsketch.DecodeDDSketchWithExactSummaryStatistics(b, boundedStore, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadHistogram, err)
	}
	if !d.IndexMapping.Equals(latencyMapping) {
		return nil, fmt.Errorf("%w: unexpected index mapping", ErrBadHistogram)
	}
	c := d.GetCount()
	if math.IsNaN(c) || math.IsInf(c, 0) || c < 0 {
		return nil, fmt.Errorf("%w: bad count", ErrBadHistogram)
	}
	return d, nil
}

// Percentiles summarises a latency distribution in milliseconds.
type Percentiles struct {
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
	Count uint64  `json:"count"`
}
