package views

import (
	"cmp"
	"slices"

	"encore.app/monitoring/health"
	"encore.app/realtime/bus"
)

// Card is one summary figure. Alert marks a figure that needs attention now; Tag
// names the source of a figure when it is not the card's usual one.
type Card struct {
	ID, Label, Value, Sub, Tag string
	Alert                      bool
}

// Cards returns the summary cards, in page order. Their figures come from the current
// overview, as do the charts' latest values (Charts), formatted the same way.
func (m Model) Cards() []Card {
	ov := m.Overview
	sav, savSub := "–", "no measurements yet"
	if m.Savings.Measured {
		d := m.Savings.PerDay
		sav = formatPerDay(d.Savings)
		switch {
		case d.Savings == 0:
			savSub = "no traffic to price yet"
		default:
			savSub = formatPerDay(m.Savings.PerMonth.Savings) + " per month (" + formatPercent(d.SavingsPercent) + " of long-polling)"
		}
	}
	conns := Card{ID: "card-connections", Label: "Connections", Value: formatCount(ov.Totals.ActiveConnections),
		Sub: "on " + plural(uint64(ov.Instances), "instance", "instances") + " · " +
			plural(ov.Totals.Subscriptions, "subscription", "subscriptions"),
		Alert: ov.Instances == 0}
	events := Card{ID: "card-events", Label: "Events delivered/s", Value: formatRate(ov.Rates.EventsDelivered),
		Sub: formatRate(ov.Rates.EventsPublished) + "/s published"}
	if ov.Totals.FramesWritten > 0 {
		events.Sub += " · " + formatRate(ov.Totals.EventsPerFrame) + " events/frame"
	}
	p50 := latencyCard("card-latency-p50", "p50", ov.DeliveryP50, ov.WriteLatency.P50, ov.ClientRTT)
	p99 := latencyCard("card-latency-p99", "p99", ov.DeliveryP99, ov.WriteLatency.P99, ov.ClientRTT)
	dropping := ov.Rates.Dropped > 0 || m.recent(func(p health.Point) float64 { return p.DropsPerSec }) > 0
	drops := Card{ID: "card-drops", Label: "Dropped events", Value: formatCount(ov.Totals.Dropped),
		Sub:   formatRate(ov.Rates.Dropped) + "/s now · " + plural(ov.Totals.SlowDisconnects, "slow-consumer disconnect", "slow-consumer disconnects"),
		Alert: dropping}
	return []Card{conns, events, p50, p99, drops,
		{ID: "card-savings", Label: "Savings per day", Value: sav, Sub: savSub}}
}

// latencyCard shows the browsers' delivery percentile when a browser reported in the
// last minute, and the server's write percentile (tagged "server") until then: a
// figure from the first second, and the card says which one it is.
func latencyCard(id, q string, browsers health.Percentiles, server float64, rtt health.Percentiles) Card {
	if browsers.Count > 0 {
		sub := "median browser, last minute · server write " + formatMs(server)
		if rtt.Count > 0 {
			sub += " · rtt " + formatMsZero(rtt.P50)
		}
		return Card{ID: id, Label: "Delivery " + q, Value: formatMs(browsers.P50), Sub: sub}
	}
	if server == 0 {
		return Card{ID: id, Label: "Delivery " + q, Value: "–", Sub: "no events written and no browser report yet"}
	}
	return Card{ID: id, Label: "Delivery " + q, Value: formatMs(server), Tag: "server write",
		Sub: "no browser report in the last minute (tabs report 3 s after connecting)"}
}

// recent is the largest value of f over the last minute of the series (now included).
func (m Model) recent(f func(health.Point) float64) float64 {
	pts := m.points()
	cut := m.end().UnixMilli() - 60_000
	var v float64
	for _, p := range pts {
		if p.T >= cut {
			v = max(v, f(p))
		}
	}
	return v
}

// recentSum is the sum of rate*step over the last minute of the series: events of a
// per-second rate in that minute.
func (m Model) recentSum(f func(health.Point) float64) float64 {
	step := float64(m.Series.StepMs) / 1000
	if step <= 0 {
		step = 5
	}
	cut := m.end().UnixMilli() - 60_000
	var n float64
	for _, p := range m.Series.Points {
		if p.T >= cut {
			n += f(p) * step
		}
	}
	return n
}

// Reason is one row of a reason panel: a count and its bar.
type Reason struct {
	Reason string
	Count  string
	Bar    string // width 0..100 of the bar, relative to the panel's largest
}

// reasons sorts a reason map by count, largest first (zeros left out).
func reasons(m map[string]uint64) []Reason {
	type kv struct {
		k string
		v uint64
	}
	var all []kv
	var top uint64
	for k, v := range m {
		if v == 0 {
			continue
		}
		all = append(all, kv{k, v})
		top = max(top, v)
	}
	slices.SortFunc(all, func(a, b kv) int {
		if c := cmp.Compare(b.v, a.v); c != 0 {
			return c
		}
		return cmp.Compare(a.k, b.k)
	})
	out := make([]Reason, len(all))
	for i, e := range all {
		out[i] = Reason{Reason: e.k, Count: formatCount(e.v), Bar: barWidth(float64(e.v), float64(top))}
	}
	return out
}

// ReasonPanel is a titled set of counts by reason with an optional sparkline of its
// rate over the range.
type ReasonPanel struct {
	ID, Title, Total string
	Rows             []Reason
	Spark            *Spark
	Alert            bool
}

// ReasonPanels returns drops, disconnects, refusals and recoveries.
func (m Model) ReasonPanels() []ReasonPanel {
	ov := m.Overview
	drops := m.spark("drops/s", func(p health.Point) float64 { return p.DropsPerSec }, formatRate)
	discs := m.spark("disconnects/s", func(p health.Point) float64 { return p.DisconnectsPerSec }, formatRate)
	return []ReasonPanel{
		{ID: "drops-table", Title: "Drops by reason", Total: formatCount(ov.Totals.Dropped), Rows: reasons(ov.Drops), Spark: &drops,
			Alert: ov.Rates.Dropped > 0 || m.recent(func(p health.Point) float64 { return p.DropsPerSec }) > 0},
		{ID: "disconnects-table", Title: "Disconnects by reason", Total: formatCount(sumCounts(ov.Disconnects)), Rows: reasons(ov.Disconnects), Spark: &discs,
			Alert: m.recentSum(func(p health.Point) float64 { return p.SlowPerSec }) >= 1},
		{ID: "refusals-table", Title: "Limit refusals", Total: formatCount(ov.Totals.Refused), Rows: reasons(ov.Refusals)},
		{ID: "recoveries-table", Title: "Recoveries", Total: formatCount(sumCounts(ov.Recoveries)), Rows: reasons(ov.Recoveries)},
	}
}

// BreakerStates lists how many instances report each breaker state, worst first.
func (m Model) BreakerStates() []Reason {
	order := map[string]int{bus.BreakerOpen: 0, bus.BreakerHalfOpen: 1, "unknown": 2, bus.BreakerClosed: 3}
	rs := reasons(m.Overview.Breakers)
	slices.SortStableFunc(rs, func(a, b Reason) int { return cmp.Compare(rank(order, a.Reason), rank(order, b.Reason)) })
	return rs
}

func rank(order map[string]int, k string) int {
	if r, ok := order[k]; ok {
		return r
	}
	return 2
}

func sumCounts(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// Input is one row of the savings inputs.
type Input struct{ Name, Value string }

// SavingsInputs lists what the savings estimate was computed from.
func (m Model) SavingsInputs() []Input {
	r := m.Savings
	p, u := r.Prices, r.Usage
	baseline := "raw bytes"
	if p.BaselineCompressed {
		baseline = "wire bytes"
	}
	return []Input{
		{"Measured window", formatAge(u.WindowSeconds)},
		{"Average clients", formatRate(r.PerDay.AverageClients)},
		{"Events delivered", formatCount(uint64(u.EventsDelivered))},
		{"Frames written", formatCount(uint64(u.Frames))},
		{"Raw bytes", formatBytes(u.BytesRaw)},
		{"Wire bytes", formatBytes(u.BytesWire)},
		{"Long-polls per client (N)", formatFloat(p.PollsPerClient)},
		{"Requests per minute per poll", formatFloat(p.PollRequestsPerMinute)},
		{"Overhead per request", formatFloat(p.RequestOverheadBytes) + " B"},
		{"Baseline payload priced at", baseline},
		{"Price per million requests/frames", formatMoney(p.PricePerMillionRequests)},
		{"Egress price per GB", formatMoney(p.EgressPricePerGB)},
		{"Price per million connection-minutes", formatMoney(p.PricePerMillionConnectionMinutes)},
		{"Days per month", formatFloat(p.DaysPerMonth)},
	}
}

// CostRow is one row of the savings table: a figure per day and per month.
type CostRow struct{ Name, Day, Month string }

// SavingsRows lists the estimate per day and per month.
func (m Model) SavingsRows() []CostRow {
	d, mo := m.Savings.PerDay, m.Savings.PerMonth
	return []CostRow{
		{"Long-poll requests (baseline)", formatCount(uint64(d.BaselineRequests)), formatCount(uint64(mo.BaselineRequests))},
		{"Long-poll egress (baseline)", formatFloat(round2(d.BaselineEgressGB)) + " GB", formatFloat(round2(mo.BaselineEgressGB)) + " GB"},
		{"Baseline cost", formatPerDay(d.BaselineCost), formatPerDay(mo.BaselineCost)},
		{"Connection-minutes", formatCount(uint64(d.ConnectionMinutes)), formatCount(uint64(mo.ConnectionMinutes))},
		{"Frames", formatCount(uint64(d.Frames)), formatCount(uint64(mo.Frames))},
		{"Wire egress", formatFloat(round2(d.WireGB)) + " GB", formatFloat(round2(mo.WireGB)) + " GB"},
		{"Streaming cost", formatPerDay(d.ActualCost), formatPerDay(mo.ActualCost)},
		{"Savings", formatPerDay(d.Savings), formatPerDay(mo.Savings)},
	}
}

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }
