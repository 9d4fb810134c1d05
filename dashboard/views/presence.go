package views

// Presence is what the presence panel shows (presence.templ): this instance's members,
// the live instances the presence tracker sees, and the busiest channels with their
// members across the cluster.
type Presence struct {
	// Enabled is false when the server runs without presence: the panel says so.
	Enabled bool
	// Instances alive for presence (this one included).
	Instances []string
	// Channels with members on this instance, the memberships (channel, user) and the
	// connections behind them; Followed channels have joins and leaves relayed here.
	Channels, Members, Conns, Followed int
	// Summary writes to the store and failed writes (retried) since start.
	Writes, WriteErrors uint64
	// Top is this instance's busiest channels, most members first.
	Top []PresenceChannel
}

// PresenceChannel is one channel of the panel: members on this instance and across the
// cluster (Users and Conns; Known is false when the cluster view could not be read).
type PresenceChannel struct {
	Channel     string
	LocalUsers  int
	Users       int
	Conns       int
	Approximate bool
	Known       bool
}
