package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"encore.app/dashboard/web"
	"encore.app/monitoring/health"
	"encore.app/monitoring/httpapi"
	"encore.app/monitoring/inspect"
	"encore.app/realtime/auth"
	"encore.app/realtime/bus"
	"encore.app/realtime/channels"
	"encore.app/realtime/limits"
	"encore.app/realtime/origin"
	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
	"encore.app/realtime/typed"
	demoweb "encore.app/web"
)

// Server is the whole realtime server of one process: backend (bus and stores),
// circuit breaker, engine, token auth, connect limits, flags, fleet health, monitoring
// API, dashboard and demo page, with the routes of Routes. Build it with New; serve
// it with ServeHTTP; end it with Shutdown (drain) or Close. Safe for concurrent use.
type Server struct {
	// immutable after New
	opts     Options
	log      *slog.Logger
	instance string
	data     *dataDir
	be       backend
	breaker  *bus.Breaker
	authn    *auth.Authenticator
	connCap  *limits.ConnCap // nil when the per-user cap is off
	pres     *presencePart   // nil when presence is off
	eng      *stream.Engine
	flags    *flagsPart
	mon      *monitorPart
	insp     inspect.Asker // the console's connection inspector (console.go)
	mux      *http.ServeMux
	origins  *origin.Policy // the one origin policy: stream, poll, flags
	devHosts bool           // dev mode: answer loopback Host names only (DNS rebinding)
	hostLog  rate.Sometimes // bounds the log of refused hosts

	devTokens  devTokens
	prometheus http.Handler
	demo       http.Handler

	draining  atomic.Bool // BeginDrain: not ready, new connections refused
	closeOnce sync.Once
}

// New validates o and builds the server; the engine is started and every route is
// ready when it returns. ctx bounds the setup only. On error nothing is left running
// and the data directory is released.
func New(ctx context.Context, o Options) (_ *Server, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	log := o.Env.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{opts: o, log: log, hostLog: rate.Sometimes{First: 5, Interval: time.Second}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.data, err = openDataDir(o.DataDir, o.Env.Root, o.Env.LockWait, log); err != nil {
		return nil, err
	}
	s.instance = o.Instance
	if s.instance == "" {
		if s.instance, err = s.data.instance(); err != nil {
			return nil, err
		}
	}
	if s.be, err = openBackend(ctx, &o, s.data.path, log); err != nil {
		return nil, err
	}
	if s.authn, err = newAuthenticator(&o, log); err != nil {
		return nil, err
	}
	if o.DevMint {
		s.devTokens.keys = s.authn.Keys
	}
	if o.MaxConnsPerUser > 0 {
		if s.connCap, err = s.be.ConnCap(ctx, limits.ConnCapConfig{Max: o.MaxConnsPerUser, TTL: o.ConnCapTTL, Instance: s.instance, Logger: log}); err != nil {
			return nil, fmt.Errorf("connection cap: %w", err)
		}
	}
	if s.origins, err = origin.New(o.Origins, log); err != nil {
		return nil, fmt.Errorf("%s: %w", o.name("Origins"), err)
	}
	s.devHosts = o.DevMode()
	if s.flags, err = openFlags(ctx, &o, s.be, s.identify, s.origins, log); err != nil {
		return nil, err
	}
	if s.pres, err = openPresence(ctx, &o, s.be, s.instance, log); err != nil {
		return nil, err
	}
	cfg := engineConfig(&o, s.instance, s.authn, newGuard(&o, s.connCap), log)
	cfg.Presence = s.pres.engineHook()
	if o.ValidatePayloads {
		v, err := channels.Families.Validator()
		if err != nil {
			return nil, fmt.Errorf("typed channels: %w", err)
		}
		cfg.CheckEvent = v.Check
	}
	cfg.Origins = s.origins
	s.mon = newMonitor()
	cfg.OnHealth = s.mon.onHealth
	cfg.WelcomeFlags = s.flags.userFlags
	s.breaker = bus.NewBreaker(s.be.Bus(), bus.BreakerConfig{
		CallTimeout: o.BusTimeout, Failures: uint32(o.BreakerFailures), OpenFor: o.BreakerOpen,
		Connected: s.be.Connected,
		OnStateChange: func(from, to string) {
			log.Warn("bus circuit breaker", "from", from, "to", to)
		},
	})
	if s.eng, err = stream.New(cfg, s.breaker); err != nil {
		return nil, err
	}
	if err = s.eng.Start(ctx); err != nil {
		return nil, err
	}
	if s.pres != nil {
		s.eng.Registry().MustRegister(s.pres.tracker.Collector())
	}
	if err = s.flags.follow(s.eng, log); err != nil {
		return nil, err
	}
	if s.insp, err = openInspector(s.be, inspect.EngineLocal(s.instance, s.eng), log); err != nil {
		return nil, err
	}
	if err = s.mon.start(ctx, s.be, s.snapshot, s.flags.streamingFlag, s.dashboardOptions(), log); err != nil {
		return nil, err
	}
	s.prometheus = promhttp.HandlerFor(s.eng.Registry(), promhttp.HandlerOpts{})
	s.demo = http.NotFoundHandler()
	if o.Demo {
		s.demo = demoweb.DemoHandler()
	}
	s.mux = http.NewServeMux()
	s.mount(s.mux)
	log.Info("realtime server ready", "instance", s.instance, "data", s.data.path, "bus", o.EffectiveBus(), "embeddedNATS", o.Embedded())
	return s, nil
}

// identify resolves the caller of GET /v2/flags like a stream request (token or
// anonymous in dev mode).
func (s *Server) identify(r *http.Request) (string, error) {
	id, err := s.eng.Identify(r)
	if err != nil {
		return "", err
	}
	return id.UserID, nil
}

// ServeHTTP serves every route of Routes. In dev mode a request whose Host is not a
// loopback name (nor allowed by Origins) is refused 421 first: a DNS-rebinding page
// reaches a loopback server under its own name.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.devHosts && !s.origins.AllowsHost(r.Host) {
		s.refuseHost(w, r)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Options returns the options the server was built with (validated).
func (s *Server) Options() Options { return s.opts }

// Instance is this instance's name.
func (s *Server) Instance() string { return s.instance }

// Engine is the stream engine (for tests and the shells' pub/sub subscription).
func (s *Server) Engine() *stream.Engine { return s.eng }

// DataDir is the locked data directory.
func (s *Server) DataDir() string { return s.data.path }

// ErrInvalidEvent wraps Publish's refusal of an event that breaks the engine's rules.
var ErrInvalidEvent = errors.New("invalid event")

// Publish checks events with the rules of POST /v2/realtime/publish (channel name,
// data size, batch size) and appends them to the bus. An event's ID, when set, is its
// bus message ID (under Encore the topic's message ID: a redelivery is appended once).
func (s *Server) Publish(ctx context.Context, evs []*protocol.Event) ([]bus.Ack, error) {
	if err := s.eng.ValidateEvents(evs); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return s.eng.Publish(ctx, evs)
}

// PublishEvent publishes one event in process with the rules of Publish and returns
// its ID: the server is a typed.Publisher for Go code that runs it (channels.Orders.
// Channel(id).Publish(ctx, srv, ...)).
func (s *Server) PublishEvent(ctx context.Context, ev *protocol.Event) (string, error) {
	acks, err := s.Publish(ctx, []*protocol.Event{ev})
	if err != nil {
		return "", err
	}
	return acks[0].ID, nil
}

var _ typed.Publisher = (*Server)(nil)

// Overview is the body of GET /v2/monitoring/overview.
func (s *Server) Overview() httpapi.OverviewBody { return s.mon.api.Overview() }

// Series is the body of GET /v2/monitoring/series.
func (s *Server) Series() httpapi.SeriesBody {
	return httpapi.SeriesBody{Series: s.mon.fleet.Aggregator.Series()}
}

// OnFleetSample makes fn run after every fleet sample (every few seconds, on the
// aggregator's goroutine; it must not block): the Encore shell sets its metrics there.
func (s *Server) OnFleetSample(fn func(health.Overview, health.Series)) { s.mon.onSample.Store(&fn) }

// snapshot is this instance's record in the fleet bucket.
// It is the engine's snapshot (the same type) with what browsers reported.
func (s *Server) snapshot() health.InstanceSnapshot {
	snap := s.eng.Snapshot()
	snap.Client = s.mon.clients.Summary()
	top := s.eng.TopChannels(channelsPerInstance)
	// A name past the record's limit (MaxChannelLength has no maximum) would make the
	// aggregator refuse the whole record: leave such channels out of the list.
	top.Top = slices.DeleteFunc(top.Top, func(c stream.ChannelCount) bool { return len(c.Channel) > health.MaxChannelName })
	snap.Channels = &top
	return snap
}

// dashboardOptions opens the console's admin panels with the flags admin key.
func (s *Server) dashboardOptions() web.Options {
	o := web.Options{AdminKey: s.flags.adminKey, Admin: &console{s: s, asker: s.insp}}
	if s.flags.adminKey == DevAdminKey {
		o.KeyHint = "Dev mode: the key is " + DevAdminKey + " (set " + s.opts.name("AdminKey") + " to change it)."
	}
	return o
}

// Shutdown is the second phase of a drain (BeginDrain, which it implies, is the
// first): waiting polls answer at once, every connection is told to reconnect
// elsewhere after a jittered delay (4101) once its queue is flushed, and Shutdown
// waits for them up to ctx (and DrainTimeout), then closes everything (Close).
func (s *Server) Shutdown(ctx context.Context) error {
	s.BeginDrain()
	var err error
	if s.eng != nil {
		dctx, cancel := s.drainContext(ctx)
		err = s.eng.Shutdown(dctx)
		cancel()
	}
	s.Close()
	return err
}

// StopPolls answers every waiting long-poll with 503 at once (for http.Server's
// RegisterOnShutdown, so a drain is not held by 25 s polls).
func (s *Server) StopPolls() { s.eng.StopPolls() }

// Close ends every connection at once and releases everything, the data directory
// last. Idempotent; safe on a partly built server.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		if s.mon != nil {
			s.mon.close()
		}
		if s.insp != nil {
			_ = s.insp.Close()
		}
		s.flags.close()
		if s.eng != nil {
			_ = s.eng.Close()
		}
		s.pres.close()
		if s.connCap != nil {
			s.connCap.Close()
		}
		if s.be != nil {
			if err := s.be.Close(); err != nil && !errors.Is(err, bus.ErrClosed) {
				s.log.Warn("bus close", "err", err)
			}
		}
		if s.data != nil {
			s.data.release()
		}
	})
}
