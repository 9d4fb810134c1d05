package views

import "strconv"

// The presence slot: the admin panel that shows who is present on a channel across the
// cluster, and this instance's presence figures. The model here, the markup in
// presence.templ, the data through dashboard/web's optional PresenceSource (the
// server's tracker: server/presence.go). A lookup is ?presence=<channel>.

// Presence is the presence panel's model.
type Presence struct {
	// Available is false when no presence source is wired (the panel says so).
	Available bool
	// Channel is the channel asked about ("" before a lookup).
	Channel string
	// Members are the present members of Channel, formatted for display (at most the
	// lookup's limit), Users and Conns every member and connection across the cluster.
	Members   []PresenceMember
	Users     int
	Conns     int
	Anonymous int
	// Truncated: Members lists fewer than Users; Approximate: Users may count a user
	// connected to two instances twice (an instance lists fewer members than it has).
	Truncated, Approximate bool
	// Error is a lookup's failure, shown in the panel.
	Error string
	// Local is this instance's presence figures (shown with or without a lookup).
	Local PresenceLocal
}

// PresenceMember is one member present on a channel.
type PresenceMember struct {
	User        string
	Connections int
	// Since is empty: the store keeps no join time.
	Since string
}

// PresenceLocal is this instance's tracker: the live instances it sees, the members it
// holds and its writes to the store.
type PresenceLocal struct {
	Enabled                            bool
	Instances                          []string
	Channels, Members, Conns, Followed int
	Writes, WriteErrors                uint64
}

// Summary is the lookup's one-line answer.
func (p Presence) Summary() string {
	s := plural(uint64(p.Users), "user", "users") + " on " + strconv.Itoa(p.Conns) + " connections"
	if p.Anonymous > 0 {
		s += " (" + strconv.Itoa(p.Anonymous) + " anonymous)"
	}
	if p.Approximate {
		s += "; the user count is approximate (a very large channel)"
	}
	if p.Truncated {
		s += "; " + strconv.Itoa(len(p.Members)) + " listed"
	}
	return s
}
