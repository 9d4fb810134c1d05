package dashboard

import (
	"context"

	"encore.app/dashboard/views"
	"encore.app/dashboard/web"
	"encore.app/monitoring"
)

// streamingFlag is the flag the page shows.
const streamingFlag = "realtime-streaming-v2"

// monitoringSource reads the figures through the monitoring service's endpoints.
type monitoringSource struct{}

func (monitoringSource) Snapshot(ctx context.Context) (web.Snapshot, error) {
	ov, err := monitoring.Overview(ctx)
	if err != nil {
		return web.Snapshot{}, err
	}
	se, err := monitoring.Series(ctx)
	if err != nil {
		return web.Snapshot{}, err
	}
	// TODO(lead): the flag's state comes from the flags service; until it exposes a
	// package-level endpoint (e.g. flags.Get(ctx, name) returning enabled and a detail),
	// the page shows the flag as "unknown".
	flag := views.Flag{Name: streamingFlag}
	return web.Snapshot{Overview: ov.Overview, Series: se.Series, Savings: ov.Savings, Flag: flag}, nil
}
