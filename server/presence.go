package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"encore.app/dashboard/views"
	"encore.app/realtime/presence"
	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
)

// presencePart is the presence tracker of this instance and the store it shares with
// the others (the backend's: NATS key-value buckets). close stops the tracker, then
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

// panel is the dashboard's presence panel: the tracker's figures and, for this
// instance's busiest channels, their members across the cluster (each read within a
// short bound, so that a slow store never holds the page).
func (p *presencePart) panel(ctx context.Context) views.Presence {
	st, ok := p.stats()
	if !ok {
		return views.Presence{}
	}
	out := views.Presence{Enabled: true, Instances: st.Instances, Channels: st.Channels, Members: st.Members,
		Conns: st.Conns, Followed: st.Followed, Writes: st.Writes, WriteErrors: st.WriteErrors}
	for _, c := range st.Top[:min(len(st.Top), 5)] {
		row := views.PresenceChannel{Channel: c.Channel, LocalUsers: c.Users}
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_ = p.tracker.Snapshot(cctx, c.Channel, 0, func(s *protocol.PresenceSnapshot) {
			row.Users, row.Conns, row.Approximate, row.Known = s.Users, s.Conns, s.Approximate, true
		})
		cancel()
		out.Top = append(out.Top, row)
	}
	return out
}
