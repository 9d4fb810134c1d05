// Service realtime streams events to browsers over one WebSocket per tab, fed by the
// realtime-events topic through a NATS JetStream bus that every instance reads.
//
// This package is the Encore shell: endpoint and pub/sub declarations and a few lines
// each. The engine is the plain package realtime/stream.
package realtime

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"encore.dev/rlog"
	"encore.dev/shutdown"

	"encore.app/flags/flag"
	"encore.app/monitoring/health"
	"encore.app/realtime/bus"
	"encore.app/realtime/natsshared"
	"encore.app/realtime/stream"
	"encore.app/realtime/streamflag"
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
	fleet  *health.Fleet        // publishes this instance's figures for the monitoring service
	flags  *flag.KVStore        // watches the flags bucket on the shared NATS
	follow *streamflag.Follower // applies realtime-streaming-v2 to the engine
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
	health.ProvideConn(b.Conn()) // the monitoring service aggregates on the same NATS
	fleet, err := health.StartFleet(ctx, b.Conn(), health.FleetConfig{Snapshot: func() health.InstanceSnapshot {
		body, _ := json.Marshal(e.Snapshot())
		snap, _ := health.DecodeEngineMetrics(body)
		return snap
	}})
	if err != nil {
		guard.close()
		return nil, err
	}
	s := &Service{engine: e, guard: guard, fleet: fleet}
	if err := s.followStreamingFlag(ctx); err != nil {
		_ = fleet.Close()
		e.Close()
		guard.close()
		return nil, err
	}
	svc = s
	return svc, nil
}

// followStreamingFlag opens the flag store on the shared NATS and makes the engine
// follow realtime-streaming-v2 (OFF for a user: stream -> long-poll; ON: back).
func (s *Service) followStreamingFlag(ctx context.Context) error {
	js, err := natsshared.JetStream(ctx, natsshared.Options{URL: secrets.NATSURL})
	if err != nil {
		return err
	}
	if s.flags, err = flag.Open(ctx, js, flag.Options{Logger: slog.Default()}); err != nil {
		return err
	}
	if s.follow, err = streamflag.Follow(s.engine, s.flags, slog.Default()); err != nil {
		s.flags.Close()
		return err
	}
	return nil
}

// Shutdown drains: every socket is told to reconnect after a jittered delay (4101).
// Not called when the development server is stopped; called on SIGINT/SIGTERM and on
// live reload.
func (s *Service) Shutdown(p shutdown.Progress) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.follow.Close()
	if err := s.engine.Shutdown(ctx); err != nil {
		rlog.Warn("drain incomplete", "err", err)
	}
	_ = s.fleet.Close()
	s.flags.Close()
	s.guard.close()
	return natsshared.Close()
}
