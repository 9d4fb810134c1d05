package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"encore.app/dashboard/views"
	"encore.app/realtime/presence"
	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
)

// presencePart is the presence tracker of this instance and the store it shares with
// the others (the backend's: NATS key-value buckets, or the Postgres tables of
// presence.PostgresStore). close stops the tracker, then
// the store.
type presencePart struct {
	store   presence.Store
	tracker *presence.Tracker
}

// openPresence starts the tracker when Options.Presence is on (nil otherwise).
func openPresence(ctx context.Context, o *Options, be backend, instance string, log *slog.Logger) (*presencePart, error) {
	if !o.Presence {
		return nil, nil
	}
	st, err := be.Presence(ctx, presence.NATSConfig{TTL: o.PresenceTTL, Replicas: o.Replicas, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("presence: %w", err)
	}
	tr, err := presence.New(presence.Config{Instance: instance, Store: st, TTL: o.PresenceTTL, Grace: o.PresenceGrace,
		MaxMembers: o.PresenceMaxMembers, Logger: log})
	if err == nil {
		err = tr.Start(ctx)
	}
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("presence: %w", err)
	}
	return &presencePart{store: st, tracker: tr}, nil
}

// engineHook is the engine's Presence (nil when presence is off).
func (p *presencePart) engineHook() stream.Presence {
	if p == nil {
		return nil
	}
	return p.tracker
}

// Stats are the tracker's figures (zero when presence is off).
func (p *presencePart) stats() (presence.Stats, bool) {
	if p == nil {
		return presence.Stats{}, false
	}
	return p.tracker.Stats(), true
}

func (p *presencePart) close() {
	if p == nil {
		return
	}
	p.tracker.Close()
	p.store.Close()
}

// Presence implements the console's web.PresenceSource: channel's members across the
// cluster (the tracker's snapshot, at most presenceAdminLimit listed) and this
// instance's figures. Its errors are shown to the operator.
func (c *console) Presence(ctx context.Context, channel string) (views.Presence, error) {
	p := c.s.pres
	st, ok := p.stats()
	if !ok {
		return views.Presence{}, errors.New("presence is off on this server (-presence)")
	}
	out := views.Presence{Local: views.PresenceLocal{Enabled: true, Instances: st.Instances, Channels: st.Channels,
		Members: st.Members, Conns: st.Conns, Followed: st.Followed, Writes: st.Writes, WriteErrors: st.WriteErrors}}
	if channel == "" {
		return out, nil
	}
	if err := protocol.ValidateChannel(channel, c.s.opts.MaxChannelLength); err != nil {
		return out, fmt.Errorf("not a channel name: %v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := p.tracker.Snapshot(ctx, channel, presenceAdminLimit, func(s *protocol.PresenceSnapshot) {
		out.Users, out.Conns, out.Anonymous, out.Truncated, out.Approximate = s.Users, s.Conns, s.Anonymous, s.Truncated, s.Approximate
		for _, m := range s.Members {
			out.Members = append(out.Members, views.PresenceMember{User: m.User, Connections: m.Conns})
		}
	})
	if err != nil {
		c.s.log.Warn("console: presence", "channel", channel, "err", err)
		return out, errors.New("the presence store could not be read: try again")
	}
	return out, nil
}

// presenceAdminLimit is how many members the console lists.
const presenceAdminLimit = 200
