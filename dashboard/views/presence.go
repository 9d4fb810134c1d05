package views

// The presence slot: the admin panel that shows who is present on a channel. Helper
// "presence" (issue 15) fills it: the model here, the markup in presence.templ, and the
// data through dashboard/web's optional PresenceSource. Until then the slot says that
// presence is not available on this server.

// Presence is the presence panel's model.
type Presence struct {
	// Available is false until a presence source is wired (the panel says so).
	Available bool
	// Channel is the channel asked about ("" before a lookup).
	Channel string
	// Members are the present members of Channel, formatted for display.
	Members []PresenceMember
	// Error is a lookup's failure, shown in the panel.
	Error string
}

// PresenceMember is one member present on a channel.
type PresenceMember struct {
	User        string
	Connections int
	Since       string
}
