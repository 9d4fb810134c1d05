package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"encore.app/dashboard/views"
	"encore.app/dashboard/web"
	"encore.app/monitoring/health"
	"encore.app/monitoring/httpapi"
	"encore.app/monitoring/savings"
	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
)

// monitor publishes this instance's snapshot to the fleet bucket, aggregates the fleet,
// and serves the overview API and the dashboard.
type monitor struct {
	clients *health.ClientHealth
	fleet   *health.Fleet
	dash    *web.Handler
	// flag reports the streaming flag for the dashboard (nil: shown as unknown).
	flag func() views.Flag
}

// onHealth feeds browsers' health frames into the fleet figures.
func (m *monitor) onHealth(_ *stream.Client, h *protocol.HealthReport) { m.clients.Observe(h) }

func newMonitor() *monitor {
	return &monitor{clients: health.NewClientHealth(time.Minute, 6, nil)}
}

// start runs the fleet publisher and aggregator on the bus's NATS and mounts the
// routes. Call after the engine started.
func (m *monitor) start(ctx context.Context, s *server, mux *http.ServeMux) error {
	snapshot := func() health.InstanceSnapshot {
		b, _ := json.Marshal(s.eng.Snapshot())
		snap, err := health.DecodeEngineMetrics(b)
		if err != nil {
			s.log.Warn("monitoring: engine snapshot", "err", err)
		}
		snap.Breaker = s.breakerState()
		snap.LongPollRequests = s.longPollRequests()
		snap.Client = m.clients.Summary()
		return snap
	}
	fleet, err := health.StartFleet(ctx, s.bus.Conn(), health.FleetConfig{Snapshot: snapshot, Aggregate: true})
	if err != nil {
		return fmt.Errorf("monitoring: %w", err)
	}
	m.fleet = fleet
	flagFn := func() views.Flag {
		if m.flag == nil {
			return views.Flag{Name: "realtime-streaming-v2"}
		}
		return m.flag()
	}
	src, err := web.NewAggregatorSource(fleet.Aggregator, savings.DefaultPrices(), "realtime-streaming-v2", flagFn)
	if err != nil {
		fleet.Close()
		return err
	}
	api, err := httpapi.New(fleet.Aggregator, savings.DefaultPrices(), s.log)
	if err != nil {
		fleet.Close()
		return err
	}
	api.Register(mux)
	m.dash = web.New(src, web.Options{})
	mux.Handle("GET /dashboard", m.dash)
	mux.Handle("GET /dashboard/", m.dash)
	return nil
}

func (m *monitor) close() {
	if m.dash != nil {
		m.dash.Close()
	}
	if m.fleet != nil {
		_ = m.fleet.Close()
	}
}
