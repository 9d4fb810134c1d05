package views

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"github.com/a-h/templ"

	"encore.app/monitoring/health"
	"encore.app/monitoring/savings"
)

func render(t *testing.T, c templ.Component) *goquery.Document {
	t.Helper()
	var buf bytes.Buffer
	if err := c.Render(context.Background(), &buf); err != nil {
		t.Fatal(err)
	}
	doc, err := goquery.NewDocumentFromReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func text(t *testing.T, doc *goquery.Document, testid string) string {
	t.Helper()
	sel := doc.Find(`[data-testid="` + testid + `"]`)
	if sel.Length() != 1 {
		t.Fatalf("%d elements with data-testid=%q, want 1", sel.Length(), testid)
	}
	return strings.TrimSpace(sel.Text())
}

func fixture(t testing.TB) Model {
	t.Helper()
	now := time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)
	var pts []health.Point
	for i := 0; i < 10; i++ {
		pts = append(pts, health.Point{
			T: now.Add(time.Duration(i-9) * 5 * time.Second).UnixMilli(), Connections: uint64(1000 + i*10),
			EventsDeliveredPerSec: 200, FramesPerSec: 100, BytesRawPerSec: 100000, BytesWirePerSec: 30000,
			DeliveryP50Ms: 4, DeliveryP99Ms: 40,
		})
	}
	series := health.Series{StepMs: 5000, Points: pts}
	rep, err := savings.Estimate(savings.FromSeries(series), savings.DefaultPrices())
	if err != nil {
		t.Fatal(err)
	}
	return Model{
		Now: now,
		Overview: health.Overview{
			Time:         now.Add(5 * time.Second).UnixMilli(),
			Instances:    2,
			Totals:       health.Totals{ActiveConnections: 1234567, Dropped: 42, SlowDisconnects: 3},
			Rates:        health.Rates{EventsDelivered: 2500, EventsPublished: 25},
			Drops:        map[string]uint64{"slow_consumer": 40, "queue_full": 2},
			Breakers:     map[string]uint64{"closed": 2},
			WriteLatency: health.Percentiles{P50: 0.4, P99: 2.5},
			DeliveryP50:  health.Percentiles{P50: 4.2, Count: 5},
			DeliveryP99:  health.Percentiles{P50: 38, Count: 5},
			InstanceRows: []health.InstanceRow{
				{Instance: "host-a", ActiveConnections: 600000, EventsPerSec: 1200, Breaker: "closed"},
				{Instance: "host-b", ActiveConnections: 634567, EventsPerSec: 1300, Breaker: "open"},
			},
		},
		Series:          series,
		Savings:         rep,
		Flag:            Flag{Name: "realtime-streaming-v2", Known: true, Enabled: true, Detail: "rollout 25%"},
		EventsURL:       "/dashboard/events",
		IntervalSeconds: 3,
	}
}

func TestCards(t *testing.T) {
	m := fixture(t)
	doc := render(t, Live(m))
	for id, want := range map[string]string{
		"card-connections-value": "1,234,567",
		"card-events-value":      "2,500",
		"card-latency-p50-value": "4.20 ms",
		"card-latency-p99-value": "38 ms",
		"card-drops-value":       "42",
		"card-savings-value":     formatMoney(m.Savings.PerDay.Savings),
	} {
		if got := text(t, doc, id); got != want {
			t.Errorf("%s = %q, want %q", id, got, want)
		}
	}
	if !m.Savings.Measured || m.Savings.PerDay.Savings <= 0 {
		t.Fatalf("fixture savings %+v", m.Savings.PerDay)
	}
}

func TestCharts(t *testing.T) {
	doc := render(t, Live(fixture(t)))
	for _, id := range []string{"chart-connections", "chart-throughput", "chart-latency", "chart-bandwidth"} {
		svg := doc.Find(`[data-testid="` + id + `"] svg`)
		if svg.Length() != 1 {
			t.Fatalf("%s: %d svg", id, svg.Length())
		}
		lines := doc.Find(`[data-testid="` + id + `-line"]`)
		if lines.Length() == 0 {
			t.Fatalf("%s: no lines", id)
		}
		lines.Each(func(_ int, s *goquery.Selection) {
			pts, _ := s.Attr("points")
			if n := len(strings.Fields(pts)); n != 11 { // 10 samples and "now"
				t.Errorf("%s %s: %d points, want 11", id, s.AttrOr("data-series", ""), n)
			}
		})
	}
	// Connections rise 1000 -> 1090, then 1,234,567 now: the axis is 0..2,000,000.
	pts := strings.Fields(doc.Find(`[data-testid="chart-connections-line"]`).AttrOr("points", ""))
	if pts[0] == pts[9] || text(t, doc, "chart-connections-ymax") != "2,000,000" {
		t.Errorf("connections chart points %v ymax %q", pts, text(t, doc, "chart-connections-ymax"))
	}
	// The legends' latest values are the current overview's, as on the cards.
	for series, want := range map[string]string{"delivery p50": "4.20 ms", "delivery p99": "38 ms"} {
		if got := doc.Find(`[data-testid="chart-latency-last"][data-series="` + series + `"]`).Text(); got != want {
			t.Errorf("latency legend %s = %q, want %q (the card's figure)", series, got, want)
		}
	}
	if got := doc.Find(`[data-testid="chart-connections-last"]`).Text(); got != "1,234,567" {
		t.Errorf("connections legend %q, want the card's count", got)
	}
}

func TestInstanceTableAndReasons(t *testing.T) {
	doc := render(t, Live(fixture(t)))
	rows := doc.Find(`[data-testid="instance-row"]`)
	if rows.Length() != 2 || rows.First().AttrOr("data-instance", "") != "host-a" {
		t.Fatalf("%d instance rows", rows.Length())
	}
	if got := rows.Last().Find(`[data-testid="instance-connections"]`).Text(); got != "634,567" {
		t.Errorf("host-b connections %q", got)
	}
	drops := doc.Find(`[data-testid="drops-table-row"]`)
	if drops.Length() != 2 || drops.First().AttrOr("data-reason", "") != "slow_consumer" {
		t.Errorf("drops rows: %d, first %q", drops.Length(), drops.First().AttrOr("data-reason", ""))
	}
	empty := render(t, InstanceTable(Model{}))
	if text(t, empty, "instance-none") == "" {
		t.Error("no empty-state row")
	}
}

func TestFlagView(t *testing.T) {
	for _, c := range []struct {
		flag Flag
		want string
	}{
		{Flag{Name: "f", Known: true, Enabled: true}, "on"},
		{Flag{Name: "f", Known: true}, "off"},
		{Flag{Name: "f"}, "unknown"},
	} {
		doc := render(t, FlagView(c.flag))
		if got := text(t, doc, "flag-state"); got != c.want {
			t.Errorf("state %q, want %q", got, c.want)
		}
		if got := doc.Find(`[data-testid="flag"]`).AttrOr("data-state", ""); got != c.want {
			t.Errorf("data-state %q, want %q", got, c.want)
		}
	}
}

func TestSavingsView(t *testing.T) {
	m := fixture(t)
	doc := render(t, SavingsView(m))
	row := doc.Find(`[data-testid="savings-row"][data-name="Savings"]`)
	if got := row.Find(`[data-period="month"]`).Text(); got != formatMoney(m.Savings.PerMonth.Savings) {
		t.Errorf("month savings %q", got)
	}
	if got := doc.Find(`[data-testid="savings-inputs"] tr[data-name="Long-polls per client (N)"] td`).Text(); got != "10" {
		t.Errorf("N input %q", got)
	}
}

func TestPageIsSelfContained(t *testing.T) {
	doc := render(t, Page(fixture(t)))
	if doc.Find(`script[src], link[rel="stylesheet"]`).Length() != 0 {
		t.Error("page loads external assets")
	}
	if got := doc.Find("#live").AttrOr("data-events", ""); got != "/dashboard/events" {
		t.Errorf("events URL %q", got)
	}
	if !strings.Contains(doc.Find("script").Text(), "EventSource") || !strings.Contains(doc.Find("style").Text(), ".card") {
		t.Error("inline script or style missing")
	}
	if text(t, doc, "card-connections-value") != "1,234,567" {
		t.Error("static page lacks the figures")
	}
	// The policy names the exact inline script and stylesheet the page carries.
	if !strings.Contains(ContentSecurityPolicy, sha256Source(doc.Find("script").Text())) ||
		!strings.Contains(ContentSecurityPolicy, sha256Source(doc.Find("style").Text())) {
		t.Error("CSP hashes do not match the inline script and style")
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{formatCount(0), "0"}, {formatCount(999), "999"}, {formatCount(1000), "1,000"}, {formatCount(1234567), "1,234,567"},
		{formatMoney(1234.5), "$1,234.50"}, {formatMoney(-2.5), "-$2.50"},
		{formatMs(0), "–"}, {formatMs(0.25), "0.25 ms"}, {formatMs(1500), "1.50 s"},
		{formatBytes(999), "999 B"}, {formatBytes(1500000), "1.5 MB"},
		{formatRate(0.5), "0.50"}, {formatRate(12.34), "12.3"},
		{plural(1, "instance", "instances"), "1 instance"}, {plural(0, "instance", "instances"), "0 instances"},
		{plural(1200, "instance", "instances"), "1,200 instances"},
		{formatPerDay(0), "$0"}, {formatPerDay(0.0031234), "$0.0031"}, {formatPerDay(12.5), "$12.50"}, {formatPerDay(-0.004), "-$0.0040"},
		{formatCountF(1), "1"}, {formatCountF(1234.4), "1,234"}, {formatMsZero(0), "< 1 ms"}, {formatMsZero(12), "12 ms"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
	if niceMax(0) != 1 || niceMax(1090) != 2000 || niceMax(3) != 5 || niceMax(10) != 10 {
		t.Error("niceMax")
	}
}

func TestChartDownsamplesKeepingSpikes(t *testing.T) {
	var pts []health.Point
	for i := 0; i < 720; i++ {
		pts = append(pts, health.Point{T: int64(i) * 5000, DropsPerSec: 0})
	}
	pts[301].DropsPerSec = 50 // one spike
	c := buildChart("c", "C", "", pts, time.UnixMilli(pts[len(pts)-1].T), time.Hour, formatRate,
		lineSpec{name: "drops", color: 5, value: func(p health.Point) float64 { return p.DropsPerSec }})
	fields := strings.Fields(c.Lines[0].Points)
	if len(fields) != maxChartPoints {
		t.Fatalf("%d points drawn, want %d", len(fields), maxChartPoints)
	}
	top := strconv.Itoa(chartPad) + ".0"
	spikes := 0
	for _, f := range fields {
		if strings.HasSuffix(f, ","+top) {
			spikes++
		}
	}
	if spikes != 1 || c.YMaxLabel != "50.0" {
		t.Fatalf("spike drawn %d times, ymax %q", spikes, c.YMaxLabel)
	}
	if !strings.HasPrefix(fields[len(fields)-1], strconv.Itoa(chartWidth)+".0,") {
		t.Fatalf("last point %q not at the right edge", fields[len(fields)-1])
	}
}

// BenchmarkLiveFragment renders one live update with a full hour of points and reports
// its size (what every open dashboard receives each interval).
func BenchmarkLiveFragment(b *testing.B) {
	m := fixture(b)
	m.Series.Points = nil
	for i := 0; i < 720; i++ {
		m.Series.Points = append(m.Series.Points, health.Point{T: int64(i) * 5000, Connections: uint64(1000 + i),
			EventsDeliveredPerSec: float64(i), FramesPerSec: float64(i / 2), BytesRawPerSec: 1e5, BytesWirePerSec: 3e4,
			DeliveryP50Ms: 4, DeliveryP99Ms: 40, WriteP99Ms: 2, RTTP50Ms: 30})
	}
	var buf bytes.Buffer
	for b.Loop() {
		buf.Reset()
		if err := Live(m).Render(context.Background(), &buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(buf.Len()), "bytes/fragment")
}
