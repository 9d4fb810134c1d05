package server

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"encore.app/flags/flag"
	"encore.app/monitoring/health"
	"encore.app/monitoring/inspect"
	"encore.app/realtime/bus"
	"encore.app/realtime/limits"
)

// backend is what the server keeps its shared state on: the event bus, the flag store,
// the fleet health bucket and the cluster-wide connection cap. Options.Bus chooses the
// kind; openBackend is the one place a new kind plugs in (a Postgres bus brings its own
// backend with its own stores).
type backend interface {
	// Bus is the event bus (the engine reaches it through the circuit breaker).
	Bus() bus.Bus
	// Connected reports whether the bus's connection is up (the breaker's probe).
	Connected() bool
	// Flags opens the flag store.
	Flags(ctx context.Context, log *slog.Logger) (flag.Store, error)
	// ConnCap opens the per-user connection cap.
	ConnCap(ctx context.Context, cfg limits.ConnCapConfig) (*limits.ConnCap, error)
	// Fleet starts this instance's health publisher and the fleet aggregator.
	Fleet(ctx context.Context, cfg health.FleetConfig) (*health.Fleet, error)
	// Close releases the bus (and an embedded server).
	Close() error
}

// openBackend builds the backend Options.Bus names. dir is the locked data directory.
func openBackend(ctx context.Context, o *Options, dir string, log *slog.Logger) (backend, error) {
	switch o.Bus {
	case BusNATS:
		b, err := openNATS(ctx, o, dir, log)
		if err != nil {
			return nil, err // not a nil *natsBackend in a non-nil interface
		}
		return b, nil
	default: // Validate refuses it first
		return nil, fmt.Errorf("%s: unknown bus %q", o.name("Bus"), o.Bus)
	}
}

// natsBackend keeps everything on one NATS: the JetStream stream of events and the
// key-value buckets of flags, fleet health and the connection cap.
type natsBackend struct {
	js *bus.JetStream
	kv jetstream.JetStream
}

func (o *Options) natsAuth() bus.ClientAuth {
	return bus.ClientAuth{
		CredsFile: o.NATSCreds, NKeyFile: o.NATSNKey, User: o.NATSUser, Password: o.NATSPassword,
		Token: o.NATSToken, TLSCA: o.NATSTLSCA, TLSCert: o.NATSTLSCert, TLSKey: o.NATSTLSKey,
	}
}

func openNATS(ctx context.Context, o *Options, dir string, log *slog.Logger) (*natsBackend, error) {
	natsOpts, err := o.natsAuth().Options()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.name("NATSCreds"), err)
	}
	b, err := bus.NewJetStream(ctx, bus.Config{
		URL: o.NATSURL, DataDir: filepath.Join(dir, "nats"), ListenAddr: o.NATSListen,
		MaxAge: o.RetentionAge, MaxBytes: int64(o.RetentionMB) << 20, Replicas: o.Replicas,
		Logger: log, NATSOptions: natsOpts,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	kv, err := jetstream.New(b.Conn())
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	return &natsBackend{js: b, kv: kv}, nil
}

func (n *natsBackend) Bus() bus.Bus     { return n.js }
func (n *natsBackend) Connected() bool  { return n.js.Conn().IsConnected() }
func (n *natsBackend) Close() error     { return n.js.Close() }
func (n *natsBackend) conn() *nats.Conn { return n.js.Conn() }

func (n *natsBackend) Flags(ctx context.Context, log *slog.Logger) (flag.Store, error) {
	s, err := flag.Open(ctx, n.kv, flag.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (n *natsBackend) ConnCap(ctx context.Context, cfg limits.ConnCapConfig) (*limits.ConnCap, error) {
	return limits.NewConnCap(ctx, n.kv, cfg)
}

func (n *natsBackend) Fleet(ctx context.Context, cfg health.FleetConfig) (*health.Fleet, error) {
	return health.StartFleet(ctx, n.conn(), cfg)
}

// Inspector asks every instance over NATS request/reply (console.go, fleetQuerier).
func (n *natsBackend) Inspector(local inspect.Local, log *slog.Logger) (inspect.Asker, error) {
	return inspect.NewNATS(n.conn(), "", local, log)
}

var _ fleetQuerier = (*natsBackend)(nil)
