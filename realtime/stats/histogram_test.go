package stats

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
)

// within reports whether got is within RelativeAccuracy of want.
func within(got, want float64) bool {
	return math.Abs(got-want) <= RelativeAccuracy*want+1e-9
}

func TestHistogramPercentilesKnownData(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 1000; i++ { // 1..1000 ms: p50 = 500, p90 = 900, p99 = 990
		h.Record(float64(i))
	}
	s := h.Summary()
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", s.P50, 500}, {"p90", s.P90, 900}, {"p99", s.P99, 990}} {
		if !within(c.got, c.want) {
			t.Errorf("%s = %v, want %v within 1%%", c.name, c.got, c.want)
		}
	}
	if s.Max != 1000 || s.Count != 1000 {
		t.Errorf("max %v count %d, want exact 1000 and 1000", s.Max, s.Count)
	}
}

func TestHistogramMergeEqualsUnion(t *testing.T) {
	a, b, all := NewHistogram(), NewHistogram(), NewHistogram()
	for i := 1; i <= 500; i++ {
		a.Record(float64(i))
		all.Record(float64(i))
	}
	for i := 501; i <= 1000; i++ {
		b.Record(float64(i) * 2) // 1002..2000
		all.Record(float64(i) * 2)
	}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	for _, q := range []float64{0.1, 0.5, 0.9, 0.99} {
		if a.Quantile(q) != all.Quantile(q) {
			t.Errorf("q%v: merged %v, union %v", q, a.Quantile(q), all.Quantile(q))
		}
	}
	if a.Count() != 1000 || a.Max() != 2000 {
		t.Errorf("count %d max %v", a.Count(), a.Max())
	}
}

func TestHistogramRecordRefusesBadValues(t *testing.T) {
	h := NewHistogram()
	if h.Record(-1) || h.Record(math.NaN()) {
		t.Fatal("negative or NaN accepted")
	}
	if !h.Record(math.Inf(1)) || h.Max() != MaxLatencyMillis {
		t.Fatalf("+Inf not clamped: max %v", h.Max())
	}
	if h.Count() != 1 {
		t.Fatalf("count %d, want 1", h.Count())
	}
}

func TestHistogramJSONRoundTrip(t *testing.T) {
	h := NewHistogram()
	for i := 0; i < 100; i++ {
		h.Record(float64(i) / 10)
	}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var back Histogram
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Summary() != h.Summary() {
		t.Fatalf("round trip: %+v, want %+v", back.Summary(), h.Summary())
	}
}

func TestHistogramEmpty(t *testing.T) {
	h := NewHistogram()
	if s := h.Summary(); s != (Percentiles{}) {
		t.Fatalf("empty summary %+v", s)
	}
	var nilHist *Histogram
	if nilHist.Count() != 0 || h.Merge(nil) != nil {
		t.Fatal("nil histogram not handled")
	}
}

func TestHistogramUnmarshalRefusesGarbage(t *testing.T) {
	big := `"` + string(make([]byte, 0)) + repeatA(maxEncodedHistogram*2) + `"`
	for name, in := range map[string]string{
		"not a string": `42`,
		"not base64":   `"@@@"`,
		"garbage":      `"AAECAwQFBgc="`,
		"too large":    big,
		"empty":        `""`,
	} {
		t.Run(name, func(t *testing.T) {
			var h Histogram
			err := json.Unmarshal([]byte(in), &h)
			if !errors.Is(err, ErrBadHistogram) {
				t.Fatalf("err = %v, want ErrBadHistogram", err)
			}
		})
	}
}

func repeatA(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'A'
	}
	return string(b)
}

func FuzzHistogramUnmarshal(f *testing.F) {
	h := NewHistogram()
	for i := 1; i < 50; i++ {
		h.Record(float64(i * i))
	}
	good, _ := json.Marshal(h)
	f.Add(good)
	f.Add([]byte(`"AAECAwQFBgc="`))
	f.Add([]byte(`""`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Histogram
		if err := json.Unmarshal(b, &h); err != nil {
			return
		}
		s := h.Summary() // must not panic
		if s.Count > 0 && (math.IsNaN(s.P50) || s.P50 < 0) {
			t.Fatalf("decoded histogram gives p50 %v", s.P50)
		}
	})
}
