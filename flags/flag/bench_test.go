package flag

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkEvaluate: the cost of one Evaluate, what the engine pays per connection
// when the flag changes.
func BenchmarkEvaluate(b *testing.B) {
	e := NewEvaluator(Flag{Name: StreamingV2, Enabled: true, Rollout: 30, Overrides: map[string]bool{"x": true}})
	users := make([]string, 1024)
	for i := range users {
		users[i] = fmt.Sprintf("user-%d", i)
	}
	b.ResetTimer()
	for i := range b.N {
		e.Evaluate(StreamingV2, users[i%len(users)])
	}
}

// BenchmarkPropagation: one change written through store A until store B (another
// connection, as another instance) has it in its snapshot. Reports p50/p99/max.
func BenchmarkPropagation(b *testing.B) {
	url, _ := startNATS(b, b.TempDir())
	_, jsA := connect(b, url)
	_, jsB := connect(b, url)
	a := openKV(b, jsA, Options{})
	s := openKV(b, jsB, Options{})
	sub, err := s.Subscribe()
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		want := i%2 == 0
		start := time.Now()
		if _, err := a.Change(b.Context(), StreamingV2, Change{Enabled: &want}, "bench"); err != nil {
			b.Fatal(err)
		}
		for s.Evaluator().Evaluate(StreamingV2, "u") != want {
			<-sub.C
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	p := percentiles(lat)
	b.ReportMetric(float64(p[0].Microseconds()), "p50-µs")
	b.ReportMetric(float64(p[1].Microseconds()), "p99-µs")
	b.ReportMetric(float64(p[2].Microseconds()), "max-µs")
}

func percentiles(d []time.Duration) [3]time.Duration {
	if len(d) == 0 {
		return [3]time.Duration{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return [3]time.Duration{s[len(s)/2], s[len(s)*99/100], s[len(s)-1]}
}
