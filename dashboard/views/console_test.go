package views

import (
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"encore.app/monitoring/health"
	"encore.app/monitoring/inspect"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
)

// Before any browser reported, the latency cards show the server's write latency,
// tagged as such, and the chart legend says "–" for the browser lines.
func TestLatencyFromTheFirstSecond(t *testing.T) {
	m := fixture(t)
	m.Overview.DeliveryP50, m.Overview.DeliveryP99 = health.Percentiles{}, health.Percentiles{}
	doc := render(t, Live(m))
	if got := text(t, doc, "card-latency-p99-value"); got != "2.50 ms" {
		t.Errorf("p99 card %q, want the server's write p99", got)
	}
	if got := text(t, doc, "card-latency-p99-tag"); got != "server write" {
		t.Errorf("p99 tag %q", got)
	}
	if got := doc.Find(`[data-testid="chart-latency-last"][data-series="write p99"]`).Text(); got != "2.50 ms" {
		t.Errorf("legend write p99 %q, want the card's figure", got)
	}
	m.Series.Points = nil // and no browser figure in the series either
	doc = render(t, Live(m))
	if got := doc.Find(`[data-testid="chart-latency-last"][data-series="delivery p50"]`).Text(); got != "–" {
		t.Errorf("legend delivery p50 %q before any report", got)
	}
	if doc.Find(`[data-testid="card-latency-p50-tag"]`).Length() != 1 {
		t.Error("p50 card not tagged")
	}
	// Units and plurals.
	if got := doc.Find(`[data-testid="card-connections"] .sub`).Text(); got != "on 2 instances · 0 subscriptions" {
		t.Errorf("connections sub %q", got)
	}
	m.Overview.Instances = 1
	if got := render(t, Live(m)).Find(`[data-testid="card-connections"] .sub`).Text(); !strings.HasPrefix(got, "on 1 instance ·") {
		t.Errorf("connections sub %q", got)
	}
}

func TestAlerts(t *testing.T) {
	m := fixture(t)
	now := time.UnixMilli(m.Overview.Time)
	m.Overview.Rates.Dropped = 2
	m.Overview.Breakers = map[string]uint64{"closed": 1, "open": 1}
	m.Overview.InstanceRows[1].Stale, m.Overview.InstanceRows[1].AgeSeconds = true, 12
	m.Overview.Departed = []health.Departure{
		{Instance: "host-c", At: now.UnixMilli(), LastSeen: now.Add(-15 * time.Second).UnixMilli(), Reason: health.DepartExpired},
		{Instance: "host-d", At: now.UnixMilli(), Reason: health.DepartShutdown},
	}
	m.Series.Points[9].SlowPerSec = 0.6 // 3 in one 5 s step
	doc := render(t, Live(m))
	kinds := map[string]string{}
	doc.Find(`[data-testid="alert"]`).Each(func(_ int, s *goquery.Selection) {
		kinds[s.AttrOr("data-kind", "")] = s.AttrOr("data-severity", "") + ": " + s.Text()
	})
	for kind, want := range map[string]string{
		"drops": "bad: Dropping events: 2.00/s", "breaker": "bad: Bus breaker open on 1 instance",
		"slow-consumers": "warn: 3 slow consumers", "stale": "warn: host-b: no report for 12s",
		"gone": "bad: host-c stopped reporting", "left": "info: host-d shut down",
	} {
		if !strings.HasPrefix(kinds[kind], want) {
			t.Errorf("alert %s = %q, want prefix %q", kind, kinds[kind], want)
		}
	}
	if doc.Find(`[data-testid="card-drops"]`).AttrOr("data-alert", "") != "true" ||
		doc.Find(`[data-testid="drops-table"]`).AttrOr("data-alert", "") != "true" ||
		doc.Find(`[data-testid="instance-row"][data-instance="host-b"]`).AttrOr("data-stale", "") != "true" {
		t.Error("drops or the stale instance not highlighted")
	}
	if doc.Find(`[data-testid="breakers-table-row"]`).First().AttrOr("data-reason", "") != "open" {
		t.Error("open breaker not listed first")
	}
	// Half-open, named as the real breaker names it (bus.Breaker.State): a warning,
	// listed after open.
	m.Overview.Breakers = map[string]uint64{bus.BreakerClosed: 1, bus.BreakerHalfOpen: 2}
	doc = render(t, Live(m))
	half := doc.Find(`[data-testid="alert"][data-kind="breaker"]`)
	if half.AttrOr("data-severity", "") != "warn" || !strings.HasPrefix(half.Text(), "Bus breaker half-open on 2 instances") {
		t.Errorf("half-open breaker alert %q (%s)", half.Text(), half.AttrOr("data-severity", ""))
	}
	if doc.Find(`[data-testid="breakers-table-row"]`).First().AttrOr("data-reason", "") != bus.BreakerHalfOpen {
		t.Error("half-open breaker not listed before closed")
	}
	calm := fixture(t)
	calm.Overview.Drops = nil
	if d := render(t, Live(calm)); d.Find(`[data-testid="alerts-none"]`).Length() != 1 || d.Find(`[data-testid="alert"]`).Length() != 0 {
		t.Error("a calm fleet shows alerts")
	}
}

func TestRangeAndPage(t *testing.T) {
	m := fixture(t)
	m.BasePath, m.Range = "/dashboard", RangeNamed("1h")
	doc := render(t, Page(m))
	if doc.Find(`[data-testid="range-1h"]`).AttrOr("aria-current", "") != "true" || doc.Find(`[data-testid="range-5m"][aria-current]`).Length() != 0 {
		t.Error("range 1h not current")
	}
	if got := doc.Find(`[data-testid="range-5m"]`).AttrOr("href", ""); got != "/dashboard?range=5m" {
		t.Errorf("5m link %q", got)
	}
	if !strings.HasPrefix(doc.Find(`link[rel="icon"]`).AttrOr("href", ""), "data:image/svg+xml,") {
		t.Error("no inline favicon")
	}
	if doc.Find(`[data-testid="chart-latency"] .xaxis span`).First().Text() != "1 h ago" {
		t.Error("x axis does not show the range")
	}
	if RangeNamed("nope").Name != "5m" {
		t.Error("default range")
	}
	// Signed out: the sign-in form, no admin panel anywhere.
	m.Login = Login{Enabled: true, Hint: "dev key"}
	doc = render(t, Page(m))
	if doc.Find(`[data-testid="login-form"]`).Length() != 1 || doc.Find(`[data-testid="channels"], [data-testid="inspector"], [data-testid="publish"]`).Length() != 0 {
		t.Error("signed-out page")
	}
}

func TestAdminPanels(t *testing.T) {
	m := fixture(t)
	m.BasePath = "/dashboard"
	now := m.Now
	m.Admin = &Admin{
		CSRF: "tok",
		Channels: health.ChannelsView{Reporting: 2, Rows: []health.ChannelRow{
			{Channel: "orders", Subscribers: 40, Polls: 2, Instances: 2, Exact: true},
			{Channel: "news", Subscribers: 3, Instances: 1},
		}},
		Inspect: &Inspect{Query: "42", Result: inspect.Result{Expected: 3, FleetWide: true, Answers: []inspect.Answer{
			{Instance: "host-a", Matched: 1, Connections: []stream.Connection{{Session: "s1", User: "42", Transport: "stream",
				Since: now.Add(-90 * time.Second).UnixMilli(), Channels: []string{"a", "b"}, ChannelCount: 3, QueueEvents: 1, QueueBytes: 2048,
				Health: &protocol.HealthReport{RTTMillis: 31, Recoveries: 2, Reconnects: 1}, HealthAt: now.Add(-5 * time.Second).UnixMilli()}}},
			{Instance: "host-b", Matched: 0},
		}}},
		Published: &Published{OK: true, Channel: "orders", Seq: 77},
	}
	doc := render(t, Page(m))
	rows := doc.Find(`[data-testid="channel-row"]`)
	if rows.Length() != 2 || rows.First().AttrOr("data-channel", "") != "orders" ||
		rows.Last().Find(`[data-testid="channel-subscribers"]`).Text() != "≥ 3" {
		t.Fatalf("channels: %d rows, %q", rows.Length(), rows.Last().Find(`[data-testid="channel-subscribers"]`).Text())
	}
	if got := text(t, doc, "inspect-summary"); got != "1 connection on 2 instances answering" {
		t.Errorf("summary %q", got)
	}
	if got := text(t, doc, "inspect-missing"); got != "1 instance did not answer in time." {
		t.Errorf("missing %q", got)
	}
	row := doc.Find(`[data-testid="inspect-row"]`)
	if row.Length() != 1 || row.AttrOr("data-instance", "") != "host-a" || text(t, doc, "inspect-rtt") != "31 ms" ||
		text(t, doc, "inspect-queue") != "1 event · 2.0 kB" || !strings.Contains(row.Text(), "a, b and 1 more") {
		t.Errorf("inspect row %q", row.Text())
	}
	if got := text(t, doc, "publish-result"); got != "Published to orders at sequence 77." {
		t.Errorf("publish result %q", got)
	}
	if doc.Find(`form[action="/dashboard/publish"] input[name="csrf"]`).AttrOr("value", "") != "tok" {
		t.Error("publish form without its CSRF token")
	}
	if doc.Find(`[data-testid="presence-unavailable"]`).Length() != 1 {
		t.Error("presence slot missing")
	}
	// The channels are part of the live region: they update with the figures.
	if render(t, Live(m)).Find(`[data-testid="channels-table"]`).Length() != 1 {
		t.Error("channels not in the live fragment")
	}
}
