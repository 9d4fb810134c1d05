package views

import (
	"cmp"
	"slices"
)

// Card is one summary figure.
type Card struct {
	ID, Label, Value, Sub string
}

// Cards returns the summary cards, in page order.
func (m Model) Cards() []Card {
	ov := m.Overview
	sav := "–"
	savSub := "no measurements yet"
	if m.Savings.Measured {
		sav = formatMoney(m.Savings.PerDay.Savings)
		savSub = formatMoney(m.Savings.PerMonth.Savings) + " per month (" + formatPercent(m.Savings.PerDay.SavingsPercent) + ")"
	}
	return []Card{
		{ID: "card-connections", Label: "Connections", Value: formatCount(ov.Totals.ActiveConnections),
			Sub: formatCount(uint64(ov.Instances)) + " instances"},
		{ID: "card-events", Label: "Events/s delivered", Value: formatRate(ov.Rates.EventsDelivered),
			Sub: formatRate(ov.Rates.EventsPublished) + "/s published"},
		{ID: "card-latency-p50", Label: "Delivery p50", Value: formatMs(ov.DeliveryP50.P50),
			Sub: "server write p50 " + formatMs(ov.WriteLatency.P50)},
		{ID: "card-latency-p99", Label: "Delivery p99", Value: formatMs(ov.DeliveryP99.P50),
			Sub: "server write p99 " + formatMs(ov.WriteLatency.P99)},
		{ID: "card-drops", Label: "Dropped events", Value: formatCount(ov.Totals.Dropped),
			Sub: formatRate(ov.Rates.Dropped) + "/s, " + formatCount(ov.Totals.SlowDisconnects) + " slow disconnects"},
		{ID: "card-savings", Label: "Savings per day", Value: sav, Sub: savSub},
	}
}

// Reason is one row of a reason table.
type Reason struct {
	Reason string
	Count  string
}

// reasons sorts a reason map by count, largest first.
func reasons(m map[string]uint64) []Reason {
	type kv struct {
		k string
		v uint64
	}
	var all []kv
	for k, v := range m {
		all = append(all, kv{k, v})
	}
	slices.SortFunc(all, func(a, b kv) int {
		if c := cmp.Compare(b.v, a.v); c != 0 {
			return c
		}
		return cmp.Compare(a.k, b.k)
	})
	out := make([]Reason, len(all))
	for i, e := range all {
		out[i] = Reason{Reason: e.k, Count: formatCount(e.v)}
	}
	return out
}

// ReasonTable is a titled list of reasons.
type ReasonTable struct {
	ID, Title string
	Rows      []Reason
}

// ReasonTables returns drops, disconnects, refusals, recoveries and breaker states.
func (m Model) ReasonTables() []ReasonTable {
	ov := m.Overview
	return []ReasonTable{
		{ID: "drops-table", Title: "Drops by reason", Rows: reasons(ov.Drops)},
		{ID: "disconnects-table", Title: "Disconnects by reason", Rows: reasons(ov.Disconnects)},
		{ID: "refusals-table", Title: "Limit refusals", Rows: reasons(ov.Refusals)},
		{ID: "recoveries-table", Title: "Recoveries", Rows: reasons(ov.Recoveries)},
		{ID: "breakers-table", Title: "Bus breaker (instances)", Rows: reasons(ov.Breakers)},
	}
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
		{"Measured window", formatFloat(u.WindowSeconds) + " s"},
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
		{"Baseline cost", formatMoney(d.BaselineCost), formatMoney(mo.BaselineCost)},
		{"Connection-minutes", formatCount(uint64(d.ConnectionMinutes)), formatCount(uint64(mo.ConnectionMinutes))},
		{"Frames", formatCount(uint64(d.Frames)), formatCount(uint64(mo.Frames))},
		{"Wire egress", formatFloat(round2(d.WireGB)) + " GB", formatFloat(round2(mo.WireGB)) + " GB"},
		{"Streaming cost", formatMoney(d.ActualCost), formatMoney(mo.ActualCost)},
		{"Savings", formatMoney(d.Savings), formatMoney(mo.Savings)},
	}
}

func round2(v float64) float64 { return float64(int64(v*100+0.5)) / 100 }
