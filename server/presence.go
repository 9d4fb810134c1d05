package server

import (
	"context"
	"fmt"
	"log/slog"

	"encore.app/realtime/presence"
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
