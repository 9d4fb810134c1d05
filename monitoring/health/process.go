package health

import (
	"context"
	"errors"
	"sync"

	"github.com/nats-io/nats.go"
)

// The process-wide NATS connection, for Encore services that cannot pass it to each
// other: the service that owns the connection (realtime) calls ProvideConn once it is
// up; the others (monitoring) wait for it with AwaitConn.
var process = struct {
	once  sync.Once
	ready chan struct{} // closed by the first ProvideConn; never reopened
	nc    *nats.Conn    // set before ready is closed
}{ready: make(chan struct{})}

// ProvideConn makes nc the process-wide connection. Only the first call counts; the
// caller keeps ownership of nc (closing it is its job).
func ProvideConn(nc *nats.Conn) {
	if nc == nil {
		return
	}
	process.once.Do(func() {
		process.nc = nc
		close(process.ready)
	})
}

// AwaitConn returns the process-wide connection, waiting for ProvideConn until ctx is done.
func AwaitConn(ctx context.Context) (*nats.Conn, error) {
	select {
	case <-process.ready:
		return process.nc, nil
	case <-ctx.Done():
		return nil, errors.Join(errors.New("health: no process-wide NATS connection provided"), ctx.Err())
	}
}

// Background starts a Fleet once a connection is available, on a goroutine it owns.
// Until then (or if starting fails) the Aggregator serves an empty fleet.
type Background struct {
	Aggregator *Aggregator // always set; fed once the fleet starts

	cancel context.CancelFunc
	done   chan struct{} // closed when the starting goroutine returns

	mu    sync.Mutex // guards fleet and err
	fleet *Fleet
	err   error
}

// StartBackground waits (on its own goroutine) for connect to return a connection, then
// starts a Fleet with cfg, running agg (created from cfg.Aggregator when nil).
func StartBackground(connect func(context.Context) (*nats.Conn, error), cfg FleetConfig) *Background {
	cfg.Bucket.defaults()
	if cfg.Aggregator.TTL <= 0 {
		cfg.Aggregator.TTL = cfg.Bucket.TTL
	}
	if cfg.Use == nil && (cfg.Aggregate || cfg.Snapshot == nil) {
		cfg.Use = NewAggregator(cfg.Aggregator)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Background{Aggregator: cfg.Use, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		nc, err := connect(ctx)
		if err == nil {
			var f *Fleet
			f, err = StartFleet(ctx, nc, cfg)
			b.mu.Lock()
			b.fleet = f
			b.mu.Unlock()
		}
		if err != nil && ctx.Err() == nil {
			b.mu.Lock()
			b.err = err
			b.mu.Unlock()
		}
	}()
	return b
}

// Err reports why the fleet could not start or stopped early, if it did.
func (b *Background) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	if b.fleet != nil {
		return b.fleet.Err()
	}
	return nil
}

// Close stops waiting or stops the fleet, and waits for every goroutine.
func (b *Background) Close() error {
	b.cancel()
	<-b.done
	b.mu.Lock()
	f := b.fleet
	b.mu.Unlock()
	if f != nil {
		return f.Close()
	}
	return nil
}
