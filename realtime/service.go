// Service realtime streams events to browsers over one WebSocket per tab, fed by the
// realtime-events topic through a NATS JetStream bus that every instance reads.
//
// This package is the Encore shell: endpoint and pub/sub declarations and a few lines
// each. The engine is the plain package realtime/stream.
package realtime

import (
	"context"
	"time"

	"encore.dev/rlog"
	"encore.dev/shutdown"

	"encore.app/realtime/bus"
	"encore.app/realtime/natsshared"
	"encore.app/realtime/stream"
)

// secrets are set with `encore secret set --type dev,local,prod NATSURL` (empty: embedded
// NATS), `encore secret set PublisherKey` and `encore secret set TokenKeys`
// ("kid:secret,...", HS256 subscriber token keys, the first signs; docs/security.md).
var secrets struct {
	NATSURL      string
	PublisherKey string
	TokenKeys    string
}

//encore:service
type Service struct {
	engine *stream.Engine
	guard  *shellGuard
}

// svc lets package-level handlers (the subscription, typed endpoints) reach the service.
var svc *Service

func initService() (*Service, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := natsshared.Bus(ctx, natsshared.Options{URL: secrets.NATSURL})
	if err != nil {
		return nil, err
	}
	cfg, guard, err := securityConfig(ctx, b)
	if err != nil {
		return nil, err
	}
	e, err := stream.New(cfg, bus.NewBreaker(b, bus.BreakerConfig{Connected: b.Conn().IsConnected}))
	if err != nil {
		guard.close()
		return nil, err
	}
	if err := e.Start(ctx); err != nil {
		guard.close()
		return nil, err
	}
	rlog.Info("realtime engine started", "epoch", e.Epoch())
	svc = &Service{engine: e, guard: guard}
	return svc, nil
}

// Shutdown drains: every socket is told to reconnect after a jittered delay (4101).
// Not called when the development server is stopped; called on SIGINT/SIGTERM and on
// live reload.
func (s *Service) Shutdown(p shutdown.Progress) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.engine.Shutdown(ctx); err != nil {
		rlog.Warn("drain incomplete", "err", err)
	}
	s.guard.close()
	return natsshared.Close()
}
