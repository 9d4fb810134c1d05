package views

import (
	"strconv"
	"time"

	"encore.app/monitoring/health"
	"encore.app/realtime/bus"
)

// Alert is one state that needs an operator's eye, shown at the top of the page.
type Alert struct {
	// Kind names the state: "no-instances", "drops", "breaker", "slow-consumers",
	// "stale", "gone", "left".
	Kind string
	// Severity is "bad", "warn" or "info".
	Severity string
	Text     string
}

// Alerts lists what needs attention now, worst first: no instance reporting, events
// being dropped, a bus breaker open, slow consumers disconnected in the last minute,
// an instance that stopped reporting (late, or gone without shutting down), and, for
// information, instances that shut down cleanly.
func (m Model) Alerts() []Alert {
	ov := m.Overview
	var out []Alert
	add := func(kind, sev, text string) { out = append(out, Alert{Kind: kind, Severity: sev, Text: text}) }
	if ov.Instances == 0 {
		add("no-instances", "bad", "No instance is reporting: the figures below are empty.")
	}
	if rate := m.recent(func(p health.Point) float64 { return p.DropsPerSec }); ov.Rates.Dropped > 0 || rate > 0 {
		text := "Dropping events: " + formatRate(max(ov.Rates.Dropped, rate)) + "/s in the last minute"
		if rs := reasons(ov.Drops); len(rs) > 0 {
			text += " (most: " + rs[0].Reason + ")"
		}
		add("drops", "bad", text+".")
	}
	if n := ov.Breakers[bus.BreakerOpen]; n > 0 {
		add("breaker", "bad", "Bus breaker open on "+plural(n, "instance", "instances")+": publishes and recoveries there fail fast.")
	} else if n := ov.Breakers[bus.BreakerHalfOpen]; n > 0 {
		add("breaker", "warn", "Bus breaker half-open on "+plural(n, "instance", "instances")+": probing the bus.")
	}
	if n := m.recentSum(func(p health.Point) float64 { return p.SlowPerSec }); n >= 1 {
		add("slow-consumers", "warn", plural(uint64(n+0.5), "slow consumer", "slow consumers")+" disconnected in the last minute.")
	}
	for _, r := range ov.InstanceRows {
		if r.Stale {
			add("stale", "warn", r.Instance+": no report for "+formatAge(r.AgeSeconds)+".")
		}
	}
	for _, d := range ov.Departed {
		at := time.UnixMilli(d.At)
		if d.Reason == health.DepartExpired {
			add("gone", "bad", d.Instance+" stopped reporting: last report "+formatClock(time.UnixMilli(d.LastSeen))+
				", dropped from the fleet at "+formatClock(at)+".")
			continue
		}
		add("left", "info", d.Instance+" shut down at "+formatClock(at)+".")
	}
	return out
}

// AlertCount says how many alerts need attention (info ones not counted).
func (m Model) AlertCount() string {
	n := 0
	for _, a := range m.Alerts() {
		if a.Severity != "info" {
			n++
		}
	}
	if n == 0 {
		return "All clear"
	}
	return strconv.Itoa(n) + " to look at"
}

func formatClock(t time.Time) string { return t.UTC().Format("15:04:05") }
