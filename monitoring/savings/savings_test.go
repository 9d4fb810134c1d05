package savings

import (
	"errors"
	"math"
	"testing"

	"encore.app/monitoring/health"
)

func near(got, want float64) bool { return math.Abs(got-want) <= 1e-9*math.Max(1, math.Abs(want)) }

// TestWorkedExample is the example in docs/monitoring.md: 1,000 clients connected for a
// one-hour window, 720,000 events delivered in 360,000 frames, 360 MB raw, 120 MB on the wire.
func TestWorkedExample(t *testing.T) {
	u := Usage{
		WindowSeconds:     3600,
		ConnectionSeconds: 1000 * 3600,
		EventsDelivered:   720_000,
		Frames:            360_000,
		BytesRaw:          360e6,
		BytesWire:         120e6,
	}
	r, err := Estimate(u, DefaultPrices())
	if err != nil {
		t.Fatal(err)
	}
	d := r.PerDay
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"average clients", d.AverageClients, 1000},
		{"connection-minutes", d.ConnectionMinutes, 1_440_000},
		{"baseline requests", d.BaselineRequests, 37_440_000},   // 1.44M × 10 × 2 + 8.64M frames
		{"baseline egress GB", d.BaselineEgressGB, 34.848},      // 37.44M × 700 B + 8.64 GB raw
		{"baseline request cost", d.BaselineRequestCost, 37.44}, // 37.44M × $1/M
		{"baseline egress cost", d.BaselineEgressCost, 3.13632}, // 34.848 GB × $0.09
		{"baseline cost", d.BaselineCost, 40.57632},
		{"connection cost", d.ConnectionCost, 0.36}, // 1.44M × $0.25/M
		{"frame cost", d.FrameCost, 8.64},           // 8.64M × $1/M
		{"wire egress cost", d.WireEgressCost, 0.2592},
		{"actual cost", d.ActualCost, 9.2592},
		{"savings per day", d.Savings, 31.31712},
		{"savings per month", r.PerMonth.Savings, 939.5136},
	} {
		if !near(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if math.Round(d.SavingsPercent*10)/10 != 77.2 {
		t.Errorf("savings percent %v, want 77.2", d.SavingsPercent)
	}
}

func TestBaselineCompressed(t *testing.T) {
	p := DefaultPrices()
	p.BaselineCompressed = true
	r, err := Estimate(Usage{WindowSeconds: 86400, BytesRaw: 9e9, BytesWire: 1e9}, p)
	if err != nil {
		t.Fatal(err)
	}
	if !near(r.PerDay.BaselineEgressGB, 1) {
		t.Fatalf("baseline egress %v GB, want 1 (wire bytes)", r.PerDay.BaselineEgressGB)
	}
}

func TestEmptyWindow(t *testing.T) {
	r, err := Estimate(Usage{}, DefaultPrices())
	if err != nil || r.Measured || r.PerDay != (Costs{}) {
		t.Fatalf("empty window: %+v %v", r, err)
	}
}

func TestBadPrices(t *testing.T) {
	for _, mut := range []func(*Prices){
		func(p *Prices) { p.PollsPerClient = -1 },
		func(p *Prices) { p.EgressPricePerGB = math.NaN() },
		func(p *Prices) { p.PricePerMillionRequests = math.Inf(1) },
	} {
		p := DefaultPrices()
		mut(&p)
		if _, err := Estimate(Usage{WindowSeconds: 1}, p); !errors.Is(err, ErrBadPrices) {
			t.Errorf("err = %v, want ErrBadPrices", err)
		}
	}
}

func TestFromSeries(t *testing.T) {
	s := health.Series{StepMs: 5000, Points: []health.Point{
		{Connections: 100, EventsDeliveredPerSec: 10, FramesPerSec: 5, BytesRawPerSec: 1000, BytesWirePerSec: 400},
		{Connections: 300, EventsDeliveredPerSec: 30, FramesPerSec: 15, BytesRawPerSec: 3000, BytesWirePerSec: 800},
	}}
	u := FromSeries(s)
	want := Usage{WindowSeconds: 10, ConnectionSeconds: 2000, EventsDelivered: 200, Frames: 100, BytesRaw: 20000, BytesWire: 6000}
	if u != want {
		t.Fatalf("usage %+v, want %+v", u, want)
	}
}
