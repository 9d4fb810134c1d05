package realtime

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"encore.app/realtime/bus"
	"encore.app/realtime/limits"
	"encore.app/realtime/stream"
)

// shellGuard holds the limits that own resources (the cluster-wide connection cap).
type shellGuard struct {
	cap *limits.ConnCap
}

func (g *shellGuard) close() {
	if g != nil && g.cap != nil {
		g.cap.Close()
	}
}

// securityConfig builds the engine config of the Encore shell: Encore's auth handler
// has verified the token (authenticate reads it); the same token keys check "auth"
// refresh frames; channel access by the default policy (public:, public., user:<id>);
// at most 10 connections per user across every instance sharing the NATS; 1 connect
// per second per user (burst 10). docs/security.md has the defaults.
func securityConfig(ctx context.Context, b *bus.JetStream) (stream.Config, *shellGuard, error) {
	cfg := stream.Config{PublisherKey: secrets.PublisherKey, Authenticate: authenticate}
	cfg.Authorize = func(id *stream.Identity, ch string) error {
		a, err := authenticator()
		if err != nil {
			return err
		}
		return a.Authorize(id, ch)
	}
	cfg.Reauthenticate = func(cur *stream.Identity, tok string) (*stream.Identity, error) {
		a, err := authenticator()
		if err != nil {
			return nil, err
		}
		return a.Reauthenticate(cur, tok)
	}
	js, err := jetstream.New(b.Conn())
	if err != nil {
		return cfg, nil, fmt.Errorf("realtime: jetstream: %w", err)
	}
	cc, err := limits.NewConnCap(ctx, js, limits.ConnCapConfig{})
	if err != nil {
		return cfg, nil, err
	}
	g := &limits.Guard{UserRate: limits.NewKeyedLimiter(1, 10, 0, nil), Cap: cc}
	cfg.Authenticate = g.Authenticate(cfg.Authenticate)
	cfg.Admit = g.Admit
	return cfg, &shellGuard{cap: cc}, nil
}
