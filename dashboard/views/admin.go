package views

import (
	"net/url"
	"strconv"
	"time"

	"encore.app/monitoring/health"
	"encore.app/monitoring/inspect"
	"encore.app/realtime/stream"
)

// Login is the sign-in form shown instead of the admin panels.
type Login struct {
	// Enabled is false when the server has no admin key: the panels cannot be opened.
	Enabled bool
	// Error is the answer to a failed sign-in ("wrong key").
	Error string
	// Hint is shown under the form (the dev-mode key, in local development only).
	Hint string
}

// Admin is what a signed-in operator sees besides the fleet's figures.
type Admin struct {
	// CSRF is the token every admin form posts back.
	CSRF string
	// Channels are the fleet's busiest channels (ChannelsError when they could not be read).
	Channels      health.ChannelsView
	ChannelsError string
	// Inspect is the connection inspector's query and answer (nil: no query yet).
	Inspect *Inspect
	// Published is the answer of the last test publish (nil: none).
	Published *Published
	// Presence is the presence panel's slot (presence.go, presence.templ).
	Presence Presence
	// ViaBearer: signed in by an Authorization header (no session to sign out of).
	ViaBearer bool
}

// Inspect is one connection-inspector lookup.
type Inspect struct {
	Query  string
	Result inspect.Result
	Error  string
}

// Published is the outcome of a test publish.
type Published struct {
	OK      bool
	Channel string
	Seq     uint64
	Error   string
}

// InspectRow is one connection of the inspector's answer, formatted.
type InspectRow struct {
	Instance, Session, User, Transport, Since, Channels  string
	Queue, RTT, Recoveries, Reconnects, Events, Reported string
}

// Rows formats the answer's connections, by instance.
func (i *Inspect) Rows(now time.Time) []InspectRow {
	var out []InspectRow
	for _, a := range i.Result.Answers {
		for _, c := range a.Connections {
			out = append(out, inspectRow(a.Instance, c, now))
		}
	}
	return out
}

func inspectRow(instance string, c stream.Connection, now time.Time) InspectRow {
	r := InspectRow{Instance: instance, Session: c.Session, User: c.User, Transport: c.Transport,
		Since: formatAge(now.Sub(time.UnixMilli(c.Since)).Seconds()) + " ago",
		Queue: plural(uint64(c.QueueEvents), "event", "events") + " · " + formatBytes(float64(c.QueueBytes)),
		RTT:   "–", Recoveries: "–", Reconnects: "–", Events: "–", Reported: "no report yet"}
	if r.Session == "" {
		r.Session = "–"
	}
	if r.User == "" {
		r.User = "(anonymous)"
	}
	r.Channels = joinChannels(c.Channels, c.ChannelCount)
	if c.Transport == stream.TransportPoll {
		r.Queue = "–"
	}
	if h := c.Health; h != nil {
		r.RTT = formatMsZero(h.RTTMillis)
		r.Recoveries = formatCount(h.Recoveries)
		r.Reconnects = formatCount(h.Reconnects)
		r.Events = formatCount(h.EventsReceived)
		r.Reported = formatAge(now.Sub(time.UnixMilli(c.HealthAt)).Seconds()) + " ago"
	}
	return r
}

func joinChannels(chans []string, total int) string {
	if total == 0 {
		return "none"
	}
	s := ""
	for i, c := range chans {
		if i > 0 {
			s += ", "
		}
		s += c
	}
	if total > len(chans) {
		s += " and " + strconv.Itoa(total-len(chans)) + " more"
	}
	return s
}

// Summary says how many connections matched and who answered.
func (i *Inspect) Summary() string {
	matched, shown := 0, 0
	for _, a := range i.Result.Answers {
		matched += a.Matched
		shown += len(a.Connections)
	}
	s := plural(uint64(matched), "connection", "connections") + " on " +
		plural(uint64(len(i.Result.Answers)), "instance answering", "instances answering")
	if shown < matched {
		s += " (" + strconv.Itoa(shown) + " shown)"
	}
	return s
}

// Missing says how many instances did not answer in time ("" when all did).
func (i *Inspect) Missing() string {
	if !i.Result.FleetWide {
		return "This backend can ask this instance only: connections on other instances are not shown."
	}
	if n := i.Result.Expected - len(i.Result.Answers); n > 0 {
		return plural(uint64(n), "instance", "instances") + " did not answer in time."
	}
	return ""
}

// ChannelRows formats the busiest channels.
func (a *Admin) ChannelRows() []ChannelRowView {
	out := make([]ChannelRowView, 0, len(a.Channels.Rows))
	var top int
	for _, r := range a.Channels.Rows {
		top = max(top, r.Subscribers+r.Polls)
	}
	for _, r := range a.Channels.Rows {
		v := ChannelRowView{Channel: r.Channel, Subscribers: formatCount(uint64(r.Subscribers)),
			Polls: formatCount(uint64(r.Polls)), Instances: formatCount(uint64(r.Instances)),
			Bar: barWidth(float64(r.Subscribers+r.Polls), float64(top))}
		if !r.Exact {
			v.Subscribers = "≥ " + v.Subscribers
		}
		out = append(out, v)
	}
	return out
}

// ChannelRowView is one formatted row of the busiest channels.
type ChannelRowView struct {
	Channel, Subscribers, Polls, Instances, Bar string
}

// ChannelsNote says how complete the list is.
func (a *Admin) ChannelsNote() string {
	v := a.Channels
	if v.Reporting == 0 {
		return "No instance reports its channels yet."
	}
	return "Stream subscribers and waiting long-polls, summed over " +
		plural(uint64(v.Reporting), "instance", "instances") + "; each instance reports its busiest channels."
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
