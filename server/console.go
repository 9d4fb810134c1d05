package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"encore.app/dashboard/web"
	"encore.app/monitoring/health"
	"encore.app/monitoring/inspect"
	"encore.app/realtime/protocol"
)

// The operator console's admin panels (dashboard/web.Admin): the fleet's busiest
// channels travel in the health snapshots (each instance lists its top
// channelsPerInstance, see Server.snapshot); a user's connections are asked for when an
// operator looks them up, through the backend's fleet query (inspect.Asker).

// channelsPerInstance is how many of its busiest channels an instance lists in its
// fleet record.
const channelsPerInstance = 20

// fleetQuerier is a backend that can ask every instance a question and collect the
// answers (the connection inspector). The NATS backend does it with request/reply on
// the bus's connection (monitoring/inspect.NATS), the Postgres backend with
// LISTEN/NOTIFY and a table of answers (monitoring/inspect.Postgres). A backend
// without it gets inspect.LocalOnly: the inspector then shows this instance's
// connections and says so.
type fleetQuerier interface {
	// Inspector starts answering other instances' queries with local and returns the
	// Asker the console uses. Close the Asker before the backend.
	Inspector(local inspect.Local, log *slog.Logger) (inspect.Asker, error)
}

// openInspector returns the backend's fleet query, or this instance only.
func openInspector(be backend, local inspect.Local, log *slog.Logger) (inspect.Asker, error) {
	if q, ok := be.(fleetQuerier); ok {
		a, err := q.Inspector(local, log)
		if err != nil {
			return nil, fmt.Errorf("connection inspector: %w", err)
		}
		return a, nil
	}
	log.Info("connection inspector: this backend cannot ask other instances; the console shows this instance only")
	return inspect.LocalOnly{Local: local}, nil
}

// console implements web.Admin for the server.
type console struct {
	s     *Server
	asker inspect.Asker
}

var _ web.Admin = (*console)(nil)

func (c *console) aggregator() *health.Aggregator { return c.s.mon.agg.Load() }

// Channels merges the instances' busiest channels.
func (c *console) Channels(_ context.Context, n int) (health.ChannelsView, error) {
	agg := c.aggregator()
	if agg == nil {
		return health.ChannelsView{}, errors.New("fleet aggregate not running")
	}
	return agg.TopChannels(n), nil
}

// Connections asks every live instance (at least this one) for q's connections.
func (c *console) Connections(ctx context.Context, q inspect.Query) (inspect.Result, error) {
	expect := 1
	if agg := c.aggregator(); agg != nil {
		expect = max(1, agg.Overview().Instances)
	}
	return c.asker.Connections(ctx, q, expect)
}

// Publish appends one test event with the publish API's checks.
func (c *console) Publish(ctx context.Context, ev *protocol.Event) (uint64, error) {
	acks, err := c.s.Publish(ctx, []*protocol.Event{ev})
	if errors.Is(err, ErrInvalidEvent) {
		return 0, fmt.Errorf("%w: %w", web.ErrInvalidEvent, errors.Unwrap(err))
	}
	if err != nil {
		return 0, err
	}
	if len(acks) != 1 {
		return 0, fmt.Errorf("publish: %d acks for one event", len(acks))
	}
	return acks[0].Seq, nil
}
