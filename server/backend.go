package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"encore.app/flags/flag"
	"encore.app/monitoring/health"
	"encore.app/monitoring/inspect"
	"encore.app/realtime/bus"
	"encore.app/realtime/limits"
	"encore.app/realtime/presence"
)

// backend is what the server keeps its shared state on: the event bus, the flag store,
// the fleet health bucket and the cluster-wide connection cap. Options.Bus chooses the
// kind (Options.EffectiveBus); openBackend is the one place a kind plugs in, and each
// kind brings all four, so that a server on Postgres needs no NATS and one on NATS
// no database.
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
	// Presence opens the store the instances' presence trackers share (for Postgres:
	// a table of summaries and one of liveness records, LISTEN/NOTIFY for the follows;
	// see presence.PostgresStore). cfg's TTL, Retention and Logger apply to every
	// kind, its bucket names and Replicas to NATS only.
	Presence(ctx context.Context, cfg presence.NATSConfig) (presence.Store, error)
	// Close releases the bus (and an embedded server).
	Close() error
}

// openBackend builds the backend Options.Bus names. dir is the locked data directory.
func openBackend(ctx context.Context, o *Options, dir string, log *slog.Logger) (backend, error) {
	switch o.EffectiveBus() {
	case BusNATS:
		b, err := openNATS(ctx, o, dir, log)
		if err != nil {
			return nil, err // not a nil *natsBackend in a non-nil interface
		}
		return b, nil
	case BusPostgres:
		b, err := openPostgres(ctx, o, log)
		if err != nil {
			return nil, err
		}
		return b, nil
	default: // Validate refuses it first
		return nil, fmt.Errorf("%s: unknown bus %q", o.name("Bus"), o.Bus)
	}
}

// namespaced is name, or name-<namespace> when the servers of a namespace must not
// meet the others on their database (Environment.Namespace).
func (o *Options) namespaced(name string) string {
	if o.Env.Namespace == "" {
		return name
	}
	return name + "-" + o.Env.Namespace
}

// pgBackend keeps everything in one PostgreSQL database (realtime/pgmigrations): the
// stream's tables, and the flags, fleet health records and connection cap rows, each
// in its bucket. No NATS server is started or reached.
type pgBackend struct {
	pg   *bus.Postgres
	pool *pgxpool.Pool
	o    *Options
	log  *slog.Logger
}

// openPostgres opens the Postgres bus: standalone on PostgresURL (it connects, creates
// the tables and owns the pool), under Encore on the shell's pool (Encore migrated it).
func openPostgres(ctx context.Context, o *Options, log *slog.Logger) (*pgBackend, error) {
	cfg := bus.PostgresConfig{
		Stream: o.namespaced(bus.DefaultPostgresStream),
		MaxAge: o.RetentionAge, MaxBytes: int64(o.RetentionMB) << 20,
		Logger: log,
	}
	var (
		b   *bus.Postgres
		err error
	)
	if o.PostgresURL != "" {
		b, err = bus.OpenPostgres(ctx, o.PostgresURL, cfg)
	} else {
		var pool *pgxpool.Pool
		if pool, err = o.Env.Postgres(); err != nil {
			return nil, fmt.Errorf("bus: postgres: %w", err)
		}
		b, err = bus.NewPostgres(ctx, pool, cfg)
		if err != nil && !errors.Is(err, bus.ErrUnavailable) {
			err = fmt.Errorf("%w (are realtime/pgmigrations applied? Encore applies them to the database realtime)", err)
		}
	}
	if err != nil {
		return nil, err
	}
	return &pgBackend{pg: b, pool: b.Pool(), o: o, log: log}, nil
}

func (p *pgBackend) Bus() bus.Bus    { return p.pg }
func (p *pgBackend) Connected() bool { return p.pg.Connected() }
func (p *pgBackend) Close() error    { return p.pg.Close() } // closes the pool it opened, never the shell's

func (p *pgBackend) Flags(ctx context.Context, log *slog.Logger) (flag.Store, error) {
	s, err := flag.OpenPostgres(ctx, p.pool, flag.PostgresOptions{Bucket: p.o.namespaced(flag.DefaultBucket), Logger: log})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (p *pgBackend) ConnCap(ctx context.Context, cfg limits.ConnCapConfig) (*limits.ConnCap, error) {
	cfg.Bucket = p.o.namespaced(limits.DefaultConnCapBucket)
	return limits.NewConnCapPostgres(ctx, p.pool, cfg)
}

// Inspector asks every instance over the database: LISTEN/NOTIFY carries the query,
// a table the answers (console.go, fleetQuerier; monitoring/inspect.Postgres).
func (p *pgBackend) Inspector(local inspect.Local, log *slog.Logger) (inspect.Asker, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return inspect.NewPostgres(ctx, p.pool, p.o.namespaced("realtime"), local, log)
}

var _ fleetQuerier = (*pgBackend)(nil)

// Presence keeps the trackers' summaries and liveness records in two tables of the
// database, with LISTEN/NOTIFY for the follows (presence.PostgresStore), in the
// namespace's scope.
func (p *pgBackend) Presence(ctx context.Context, cfg presence.NATSConfig) (presence.Store, error) {
	s, err := presence.NewPostgresStore(ctx, p.pool, presence.PostgresConfig{
		Scope: p.o.namespaced("realtime"), TTL: cfg.TTL, Retention: cfg.Retention, Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err // not a nil *PostgresStore in a non-nil interface
	}
	return s, nil
}

func (p *pgBackend) Fleet(ctx context.Context, cfg health.FleetConfig) (*health.Fleet, error) {
	cfg.Bucket.Name = p.o.namespaced(health.DefaultBucket)
	recs, err := health.OpenPostgresRecords(ctx, p.pool, cfg.Bucket, p.log)
	if err != nil {
		return nil, err
	}
	return health.StartFleetOn(recs, cfg), nil
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
	cfg := bus.Config{
		URL: o.NATSURL, DataDir: filepath.Join(dir, "nats"), ListenAddr: o.NATSListen,
		MaxAge: o.RetentionAge, MaxBytes: int64(o.RetentionMB) << 20, Replicas: o.Replicas,
		Logger: log, NATSOptions: natsOpts,
	}
	if o.NATSURL == "" { // the credentials are what the embedded server's listener requires
		cfg.ListenAuth, cfg.NATSOptions = o.natsAuth(), nil
	}
	b, err := bus.NewJetStream(ctx, cfg)
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

func (n *natsBackend) Presence(ctx context.Context, cfg presence.NATSConfig) (presence.Store, error) {
	s, err := presence.NewNATSStore(ctx, n.conn(), cfg)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (n *natsBackend) Fleet(ctx context.Context, cfg health.FleetConfig) (*health.Fleet, error) {
	return health.StartFleet(ctx, n.conn(), cfg)
}

// Inspector asks every instance over NATS request/reply (console.go, fleetQuerier).
func (n *natsBackend) Inspector(local inspect.Local, log *slog.Logger) (inspect.Asker, error) {
	return inspect.NewNATS(n.conn(), "", local, log)
}

var _ fleetQuerier = (*natsBackend)(nil)
