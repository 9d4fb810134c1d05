package health

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"testing"
	"time"

	"encore.app/realtime/bus"
	"encore.app/realtime/stats"
)

// snap builds a snapshot of instance name at clock time now with the given counters.
func snap(name string, now time.Time, conns, delivered, frames uint64) InstanceSnapshot {
	return InstanceSnapshot{
		Instance: name, Time: now.UnixMilli(), ActiveConnections: int64(conns),
		EventsDelivered: delivered, FramesWritten: frames, EventsPublished: delivered / 10,
		BytesRaw: delivered * 100, BytesWire: frames * 120,
		Drops:    map[string]uint64{"slow_consumer": 1},
		Refusals: map[string]uint64{"rate_limited": 2},
		Breaker:  bus.BreakerClosed,
	}
}

func TestAggregatorMergesInstances(t *testing.T) {
	clk := newFakeClock()
	a := NewAggregator(AggregatorOptions{Now: clk.Now})
	t0 := clk.Now()
	mustPut(t, a, snap("a", t0, 10, 1000, 100))
	mustPut(t, a, snap("b", t0, 30, 5000, 200))
	clk.Advance(5 * time.Second)
	t1 := clk.Now()
	mustPut(t, a, snap("a", t1, 12, 1500, 150)) // +500 events, +50 frames in 5 s
	mustPut(t, a, snap("b", t1, 28, 6000, 300)) // +1000 events, +100 frames

	ov := a.Overview()
	if ov.Instances != 2 || ov.Totals.ActiveConnections != 40 {
		t.Fatalf("instances %d connections %d, want 2 and 40", ov.Instances, ov.Totals.ActiveConnections)
	}
	if ov.Totals.EventsDelivered != 7500 || ov.Totals.FramesWritten != 450 {
		t.Fatalf("totals %+v", ov.Totals)
	}
	if ov.Rates.EventsDelivered != 300 || ov.Rates.FramesWritten != 30 {
		t.Fatalf("rates delivered %v frames %v, want 300 and 30", ov.Rates.EventsDelivered, ov.Rates.FramesWritten)
	}
	if ov.Drops["slow_consumer"] != 2 || ov.Totals.Dropped != 2 || ov.Totals.Refused != 4 {
		t.Fatalf("drops %v refused %d", ov.Drops, ov.Totals.Refused)
	}
	if ov.Breakers[bus.BreakerClosed] != 2 {
		t.Fatalf("breakers %v", ov.Breakers)
	}
	if len(ov.InstanceRows) != 2 || ov.InstanceRows[0].Instance != "a" || ov.InstanceRows[1].EventsPerSec != 200 {
		t.Fatalf("rows %+v", ov.InstanceRows)
	}
	if ov.Totals.EventsPerFrame != 7500.0/450 {
		t.Fatalf("events per frame %v", ov.Totals.EventsPerFrame)
	}
}

func TestAggregatorRestartedInstanceRate(t *testing.T) {
	clk := newFakeClock()
	a := NewAggregator(AggregatorOptions{Now: clk.Now})
	mustPut(t, a, snap("a", clk.Now(), 1, 100000, 100))
	clk.Advance(10 * time.Second)
	mustPut(t, a, snap("a", clk.Now(), 1, 200, 10)) // restarted: counters reset
	if r := a.Overview().Rates.EventsDelivered; r != 20 {
		t.Fatalf("rate after restart %v, want 20 (200 events in 10s)", r)
	}
}

func TestAggregatorExpiresByTTL(t *testing.T) {
	clk := newFakeClock()
	a := NewAggregator(AggregatorOptions{Now: clk.Now, TTL: 15 * time.Second})
	mustPut(t, a, snap("a", clk.Now(), 10, 0, 0))
	clk.Advance(10 * time.Second)
	mustPut(t, a, snap("b", clk.Now(), 5, 0, 0))
	if n := a.Overview().Instances; n != 2 {
		t.Fatalf("%d instances, want 2", n)
	}
	clk.Advance(5 * time.Second) // a is 15 s old
	ov := a.Overview()
	if ov.Instances != 1 || ov.InstanceRows[0].Instance != "b" || ov.Totals.ActiveConnections != 5 {
		t.Fatalf("after TTL: %+v", ov.InstanceRows)
	}
	a.Remove(Key("b"))
	if n := a.Overview().Instances; n != 0 {
		t.Fatalf("%d instances after Remove", n)
	}
}

func TestAggregatorLimits(t *testing.T) {
	clk := newFakeClock()
	a := NewAggregator(AggregatorOptions{Now: clk.Now, MaxInstances: 3})
	for i := 0; i < 3; i++ {
		mustPut(t, a, snap(fmt.Sprint("i", i), clk.Now(), 1, 0, 0))
	}
	if err := a.Put(snap("i3", clk.Now(), 1, 0, 0)); err == nil {
		t.Fatal("fourth instance accepted past MaxInstances 3")
	}
	if err := a.Put(snap("i0", clk.Now().Add(-time.Second), 1, 0, 0)); err == nil {
		t.Fatal("older snapshot accepted")
	}
	if err := a.PutEncoded("x", []byte(`{not json`)); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("garbage: %v", err)
	}
	good, _ := json.Marshal(snap("y", clk.Now(), 1, 0, 0))
	if err := a.PutEncoded("x", good); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("key mismatch: %v", err)
	}
	r := a.Rejected()
	if r[RejectTooMany] != 1 || r[RejectOutOfOrder] != 1 || r[RejectDecode] != 1 || r[RejectKeyMismatch] != 1 {
		t.Fatalf("rejected %v", r)
	}
	if a.Overview().Instances != 3 {
		t.Fatal("refused entries changed the fleet")
	}
}

func TestAggregatorMergesHistograms(t *testing.T) {
	clk := newFakeClock()
	a := NewAggregator(AggregatorOptions{Now: clk.Now})
	all := NewHistogram()
	for i, name := range []string{"a", "b"} {
		s := snap(name, clk.Now(), 1, 0, 0)
		s.WriteLatency, s.Client.RTT = NewHistogram(), NewHistogram()
		for v := 1; v <= 500; v++ {
			x := float64(i*500 + v) // a: 1..500, b: 501..1000
			s.WriteLatency.Record(x)
			s.Client.RTT.Record(x / 10)
			all.Record(x)
		}
		s.WriteLatencyMs = s.WriteLatency.Summary()
		mustPut(t, a, roundTrip(t, s))
	}
	ov := a.Overview()
	if !ov.WriteLatencyExact || ov.WriteLatency != all.Summary() {
		t.Fatalf("write latency %+v exact=%v, want %+v", ov.WriteLatency, ov.WriteLatencyExact, all.Summary())
	}
	if !within(ov.WriteLatency.P99, 990) || !within(ov.ClientRTT.P50, 50) {
		t.Fatalf("p99 %v rtt p50 %v", ov.WriteLatency.P99, ov.ClientRTT.P50)
	}

	// An instance with only the engine's summary makes the merge approximate.
	s := snap("c", clk.Now(), 1, 0, 0)
	s.WriteLatencyMs = Percentiles{P50: 2000, P90: 3000, P99: 4000, Max: 5000, Count: 1000}
	mustPut(t, a, s)
	ov = a.Overview()
	if ov.WriteLatencyExact || ov.WriteLatency.P99 != 4000 || ov.WriteLatency.Count != 2000 {
		t.Fatalf("approximate merge: %+v exact=%v", ov.WriteLatency, ov.WriteLatencyExact)
	}
}

// roundTrip encodes and decodes s, as the bucket does.
func roundTrip(t *testing.T, s InstanceSnapshot) InstanceSnapshot {
	t.Helper()
	b, err := EncodeSnapshot(&s)
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeSnapshot(b)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAggregatorSeriesRingBounded(t *testing.T) {
	clk := newFakeClock()
	var samples int
	a := NewAggregator(AggregatorOptions{Now: clk.Now, Points: 720, Step: 5 * time.Second, TTL: time.Hour,
		OnSample: func(Overview) { samples++ }})
	for i := 0; i < 1000; i++ {
		mustPut(t, a, snap("a", clk.Now(), uint64(i), uint64(i*10), uint64(i)))
		a.Sample()
		clk.Advance(5 * time.Second)
	}
	s := a.Series()
	if samples != 1000 {
		t.Fatalf("OnSample called %d times, want 1000", samples)
	}
	if len(s.Points) != 720 || s.StepMs != 5000 {
		t.Fatalf("%d points step %d, want 720 and 5000", len(s.Points), s.StepMs)
	}
	if s.Points[0].Connections != 280 || s.Points[719].Connections != 999 {
		t.Fatalf("oldest %d newest %d, want 280 and 999", s.Points[0].Connections, s.Points[719].Connections)
	}
	for i := 1; i < len(s.Points); i++ {
		if s.Points[i].T-s.Points[i-1].T != 5000 {
			t.Fatalf("points %d,%d not 5 s apart", i-1, i)
		}
	}
	if got := s.Points[719].EventsDeliveredPerSec; got != 2 {
		t.Fatalf("rate %v, want 2 (10 events per 5 s)", got)
	}
}

func TestRingOrder(t *testing.T) {
	r := NewRing(3)
	for i := 1; i <= 4; i++ {
		r.Add(Point{T: int64(i)})
	}
	p := r.Points()
	if r.Len() != 3 || r.Cap() != 3 || p[0].T != 2 || p[2].T != 4 {
		t.Fatalf("points %+v", p)
	}
}

// The engine's /v2/realtime/metrics body is a bucket value as it is.
func TestDecodeSnapshot(t *testing.T) {
	body := `{"instance":"host-a1b2","time":1764222000000,"uptimeSeconds":12,"activeConnections":3,"connectionsTotal":4,
	 "subscriptions":5,"eventsPublished":6,"eventsDispatched":7,"eventsDelivered":8,"eventsReplayed":9,
	 "framesWritten":10,"eventsPerFrame":0.8,"bytesRaw":11,"bytesWire":12,
	 "drops":{"slow_consumer":1},"disconnects":{"client_closed":2},"slowDisconnects":1,
	 "recoveries":{"memory":1,"bus":0,"not_recovered":0},"refusals":{},"healthReports":13,
	 "writeLatencyMs":{"p50":0.5,"p90":1,"p99":2.5,"max":9,"count":10}}`
	s, err := DecodeSnapshot([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if s.Instance != "host-a1b2" || s.ActiveConnections != 3 || s.EventsDelivered != 8 || s.WriteLatencyMs.P99 != 2.5 || s.Drops["slow_consumer"] != 1 {
		t.Fatalf("decoded %+v", s)
	}
	for name, in := range map[string]string{
		"no instance": `{"activeConnections":1}`,
		"too large":   `{"instance":"a","x":"` + repeatA(MaxSnapshotBytes) + `"}`,
		"bad json":    `{"instance":`,
		"too many":    tooManyReasons(),
	} {
		if _, err := DecodeSnapshot([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func tooManyReasons() string {
	m := map[string]uint64{}
	for i := 0; i <= MaxReasons; i++ {
		m[fmt.Sprint("r", i)] = 1
	}
	b, _ := json.Marshal(InstanceSnapshot{Instance: "a", Drops: m})
	return string(b)
}

func TestKey(t *testing.T) {
	if got := Key("host.a1:b2/c"); got != "host_a1_b2_c" {
		t.Fatalf("Key = %q", got)
	}
}

func FuzzDecodeSnapshot(f *testing.F) {
	s := snap("a", time.Unix(1, 0), 1, 2, 3)
	s.WriteLatency = NewHistogram()
	s.WriteLatency.Record(3)
	b, _ := json.Marshal(s)
	f.Add(b)
	f.Add([]byte(`{"instance":"x"}`))
	f.Add([]byte(`{"instance":"x","client":{"rtt":"AAE="}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeSnapshot(b)
		if err != nil {
			return
		}
		a := NewAggregator(AggregatorOptions{})
		if err := a.Put(s); err != nil {
			t.Fatalf("valid snapshot refused: %v", err)
		}
		_ = a.Overview() // must not panic
	})
}

func mustPut(t *testing.T, a *Aggregator, s InstanceSnapshot) {
	t.Helper()
	if err := a.Put(s); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkAggregatorOverview merges 100 instances with histograms.
func BenchmarkAggregatorOverview(b *testing.B) {
	a := NewAggregator(AggregatorOptions{})
	for i := 0; i < 100; i++ {
		s := InstanceSnapshot{Instance: "i" + strconv.Itoa(i), Time: 1, Drops: map[string]uint64{"slow_consumer": 1}}
		s.WriteLatency, s.Client.RTT, s.Client.LatencyP50, s.Client.LatencyP99 = NewHistogram(), NewHistogram(), NewHistogram(), NewHistogram()
		for v := 1; v < 1000; v++ {
			s.WriteLatency.Record(float64(v) / 100)
			s.Client.RTT.Record(float64(v) / 10)
			s.Client.LatencyP50.Record(float64(v) / 20)
			s.Client.LatencyP99.Record(float64(v) / 5)
		}
		if err := a.Put(s); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		a.Overview()
	}
}

// within reports whether got is within the histograms' relative accuracy of want.
func within(got, want float64) bool {
	return math.Abs(got-want) <= stats.RelativeAccuracy*want+1e-9
}

func repeatA(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'A'
	}
	return string(b)
}
