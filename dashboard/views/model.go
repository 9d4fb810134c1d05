// Package views renders the operator's console with templ: alerts, summary cards,
// server-side SVG charts over a selectable range, drops and disconnects by reason as
// bars, the flag and breaker state, the instance table, the savings estimate and, for a
// signed-in operator, the admin panels (busiest channels, connection inspector, test
// publish, and the presence slot). Every card, counter, chart and panel carries a
// stable data-testid attribute.
//
// Layout is CSS grid and flex with no fixed widths: the page fits any width from
// 360 px up without horizontal scrolling (tables turn into stacked rows on narrow
// screens). There are no external assets: the stylesheet, the favicon and the small
// live-update script are inline.
//
// Regenerate after editing a .templ file: go generate ./dashboard/ (go tool templ generate).
package views

import (
	"time"

	"encore.app/monitoring/health"
	"encore.app/monitoring/savings"
)

// Model is everything one rendering shows.
type Model struct {
	Now      time.Time
	Overview health.Overview
	Series   health.Series
	Savings  savings.Report
	Flag     Flag
	// Range is the charts' time range.
	Range Range
	// BasePath is where the dashboard is mounted ("/dashboard"): links, forms and the
	// events URL are under it.
	BasePath string
	// EventsURL is where the page's script subscribes for live updates.
	EventsURL string
	// IntervalSeconds is the live update period shown on the page.
	IntervalSeconds int
	// Admin is the signed-in operator's panels; nil shows Login instead.
	Admin *Admin
	Login Login
}

// Range is a selectable time range of the charts.
type Range struct {
	Name  string // query value: "5m", "1h"
	Label string // "5 min"
	Span  time.Duration
}

// Ranges are the charts' ranges, the first the default.
var Ranges = []Range{
	{Name: "5m", Label: "5 min", Span: 5 * time.Minute},
	{Name: "1h", Label: "1 h", Span: time.Hour},
}

// RangeNamed returns the range with name, or the default.
func RangeNamed(name string) Range {
	for _, r := range Ranges {
		if r.Name == name {
			return r
		}
	}
	return Ranges[0]
}

// Flag is the streaming flag's state, as the flags service reports it.
type Flag struct {
	Name string
	// Known is false when no flag source is wired: the page says "unknown".
	Known   bool
	Enabled bool
	// Detail is free text shown next to the state (e.g. "rollout 25%").
	Detail string
}

// State is the flag's state as a word.
func (f Flag) State() string {
	switch {
	case !f.Known:
		return "unknown"
	case f.Enabled:
		return "on"
	default:
		return "off"
	}
}

// RangeURL is the page's URL showing range r (keeping the inspector's query).
func (m Model) RangeURL(r Range) string {
	u := m.BasePath + "?range=" + r.Name
	if m.Admin != nil && m.Admin.Inspect != nil && m.Admin.Inspect.Query != "" {
		u += "&user=" + urlQueryEscape(m.Admin.Inspect.Query)
	}
	return u
}

// Path joins the base path and a sub-path ("/login").
func (m Model) Path(sub string) string { return m.BasePath + sub }
