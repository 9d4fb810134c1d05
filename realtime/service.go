// Service realtime streams events to browsers over one WebSocket per tab, fed by the
// realtime-events topic through a NATS JetStream bus that every instance reads.
//
// This package is the Encore shell: endpoint and pub/sub declarations and a few lines
// each. The engine is the plain package realtime/stream.
package realtime

import (
	"context"
	"encoding/json"
	"time"

	"encore.dev/rlog"
	"encore.dev/shutdown"

	"encore.app/monitoring/health"
	"encore.app/realtime/natsshared"
	"encore.app/realtime/stream"
)

// secrets are set with `encore secret set --type dev,local,prod NATSURL` (empty: embedded
// NATS) and `encore secret set PublisherKey`.
var secrets struct {
	NATSURL      string
	PublisherKey string
}

//encore:service
type Service struct {
	engine *stream.Engine
	fleet  *health.Fleet // publishes this instance's figures for the monitoring service
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
	e, err := stream.New(stream.Config{PublisherKey: secrets.PublisherKey, Authenticate: authenticate}, b)
	if err != nil {
		return nil, err
	}
	if err := e.Start(ctx); err != nil {
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
		return nil, err
	}
	svc = &Service{engine: e, fleet: fleet}
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
	_ = s.fleet.Close()
	return natsshared.Close()
}
