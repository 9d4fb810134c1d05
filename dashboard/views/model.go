// Package views renders the operations dashboard with templ: summary cards, server-side
// SVG charts, the instance table, the streaming flag and the savings estimate. Every
// card, counter and chart carries a stable data-testid attribute.
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
	Presence Presence // presence.templ
	// EventsURL is where the page's script subscribes for live updates.
	EventsURL string
	// IntervalSeconds is the live update period shown on the page.
	IntervalSeconds int
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
