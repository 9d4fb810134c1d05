// Package natsshared gives every Encore service of one process the same bus: a lazily
// started, process-wide bus.JetStream (an embedded nats-server unless a NATS URL is
// given). Under `encore run` all services share one process, so the realtime stream,
// the flag store and fleet health all see one NATS. Deployments that split services
// into several processes set the NATS URL (the Encore secret NATSURL) so they meet on
// an external NATS.
//
// The standalone server (cmd/realtimed) does not use this package: it owns its bus.
package natsshared

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"encore.app/realtime/bus"
)

// Options select the NATS. Every caller in a process should pass the same URL; the
// first call that succeeds decides.
type Options struct {
	// URL of an external NATS (the NATSURL secret); empty starts an embedded server.
	URL string
	// DataDir for the embedded server (default $REALTIME_DATA, else
	// <tmp>/encore-realtime/nats). Reused across restarts, so `encore run` keeps history.
	DataDir string
}

var (
	mu     sync.Mutex
	shared *bus.JetStream
)

// Bus returns the process-wide bus, starting it on first use. A failed start is not
// remembered: the next call tries again.
func Bus(ctx context.Context, o Options) (*bus.JetStream, error) {
	mu.Lock()
	defer mu.Unlock()
	if shared != nil {
		return shared, nil
	}
	dir := o.DataDir
	if dir == "" {
		dir = os.Getenv("REALTIME_DATA")
	}
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "encore-realtime")
	}
	// Stream replicas: $REALTIME_REPLICAS (3 on a NATS cluster); default 1.
	replicas, _ := strconv.Atoi(os.Getenv("REALTIME_REPLICAS"))
	b, err := bus.NewJetStream(ctx, bus.Config{URL: o.URL, DataDir: filepath.Join(dir, "nats"), Replicas: replicas})
	if err != nil {
		return nil, fmt.Errorf("natsshared: %w", err)
	}
	shared = b
	return b, nil
}

// Conn is the shared bus's NATS connection.
func Conn(ctx context.Context, o Options) (*nats.Conn, error) {
	b, err := Bus(ctx, o)
	if err != nil {
		return nil, err
	}
	return b.Conn(), nil
}

// JetStream is a JetStream context on the shared connection (for key-value buckets).
func JetStream(ctx context.Context, o Options) (jetstream.JetStream, error) {
	nc, err := Conn(ctx, o)
	if err != nil {
		return nil, err
	}
	return jetstream.New(nc)
}

// Close stops the shared bus (for graceful shutdown of the last service).
func Close() error {
	mu.Lock()
	defer mu.Unlock()
	if shared == nil {
		return nil
	}
	err := shared.Close()
	shared = nil
	return err
}
