// Command realtimed is the standalone realtime server: the same engine as the Encore
// service, on a standard mux, with an embedded NATS JetStream (or an external NATS).
//
//	go run ./cmd/realtimed            # http://127.0.0.1:4000, data in ./data
//
// Every flag can also be set by the environment variable named in its help text.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"encore.app/realtime/bus"
	"encore.app/realtime/stream"
	demoweb "encore.app/web"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "realtimed:", err)
		os.Exit(1)
	}
}

// options are the server's settings, from flags and environment variables.
type options struct {
	addr, data, natsURL, natsListen, publisherKey, instance, logFormat, logLevel string
	adminKey                                                                     string
	origins                                                                      string
	retentionAge                                                                 time.Duration
	retentionBytes                                                               int64
	replicas                                                                     int
	engine                                                                       stream.Config
	compressionThreshold                                                         int
	drainTimeout                                                                 time.Duration
	pprof                                                                        *bool
	sec                                                                          securityOptions
	natsAuth                                                                     bus.ClientAuth // natsflags.go
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("realtimed", flag.ContinueOnError)
	str := func(p *string, name, env, def, help string) {
		if v, ok := os.LookupEnv(env); ok {
			def = v
		}
		fs.StringVar(p, name, def, help+" ($"+env+")")
	}
	dur := func(p *time.Duration, name, env string, def time.Duration, help string) {
		if v, ok := os.LookupEnv(env); ok {
			if d, err := time.ParseDuration(v); err == nil {
				def = d
			}
		}
		fs.DurationVar(p, name, def, help+" ($"+env+")")
	}
	num := func(p *int, name, env string, def int, help string) {
		if v, ok := os.LookupEnv(env); ok {
			if n, err := strconv.Atoi(v); err == nil {
				def = n
			}
		}
		fs.IntVar(p, name, def, help+" ($"+env+")")
	}
	var retBytes, budgetMB int
	str(&o.addr, "addr", "REALTIME_ADDR", "127.0.0.1:4000", "listen address")
	str(&o.data, "data", "REALTIME_DATA", "./data", "data directory (embedded NATS storage)")
	str(&o.natsURL, "nats-url", "REALTIME_NATS_URL", "", "external NATS URL(s), comma-separated; empty starts an embedded server")
	str(&o.natsListen, "nats-listen", "REALTIME_NATS_LISTEN", "", "let the embedded NATS also listen on this address (e.g. 127.0.0.1:4222) so other instances can join it")
	str(&o.publisherKey, "publisher-key", "REALTIME_PUBLISHER_KEY", "", "key for POST /v2/realtime/publish (Bearer); empty = dev mode with key \"dev\"")
	str(&o.adminKey, "admin-key", "REALTIME_ADMIN_KEY", "", "flags admin key (Bearer, at least 16 bytes) for /v2/flags/admin; empty = dev mode with a fixed key")
	str(&o.instance, "instance", "REALTIME_INSTANCE", "", "instance name (default: <hostname>-<random>, kept in <data>/instance-id)")
	str(&o.origins, "origins", "REALTIME_ORIGINS", "", "comma-separated allowed browser Origin host patterns (default: same host only)")
	str(&o.logFormat, "log-format", "REALTIME_LOG_FORMAT", "text", "text or json")
	str(&o.logLevel, "log-level", "REALTIME_LOG_LEVEL", "info", "debug, info, warn, error")
	dur(&o.retentionAge, "retention-age", "REALTIME_RETENTION_AGE", 24*time.Hour, "keep events this long for replay")
	num(&retBytes, "retention-mb", "REALTIME_RETENTION_MB", 1024, "keep at most this many MiB of events")
	num(&o.replicas, "replicas", "REALTIME_REPLICAS", 1, "stream replicas: 1 with the embedded server, 3 on a NATS cluster of 3 or more nodes")
	natsAuthFlags(fs, &o.natsAuth)
	dur(&o.engine.BatchWindow, "batch-window", "REALTIME_BATCH_WINDOW", 20*time.Millisecond, "coalescing window after a frame")
	num(&o.engine.BatchMaxEvents, "batch-max", "REALTIME_BATCH_MAX", 100, "most events per frame")
	dur(&o.engine.BatchWindowMax, "batch-window-max", "REALTIME_BATCH_WINDOW_MAX", 50*time.Millisecond, "widest batch window under load (see -frame-budget); at most -batch-window keeps it fixed")
	num(&o.engine.FrameBudget, "frame-budget", "REALTIME_FRAME_BUDGET", 60000, "event frames per second past which the batch window widens")
	num(&o.engine.Writers, "writers", "REALTIME_WRITERS", 0, "goroutines writing to connections (never blocked by a socket); 0 = 2 x GOMAXPROCS, at least 4")
	num(&o.engine.QueueMaxEvents, "queue-events", "REALTIME_QUEUE_EVENTS", 4096, "per-connection queue bound (events)")
	num(&o.engine.QueueMaxBytes, "queue-bytes", "REALTIME_QUEUE_BYTES", 4<<20, "per-connection queue bound (bytes)")
	num(&budgetMB, "queue-budget-mb", "REALTIME_QUEUE_BUDGET_MB", 0, "MiB queued to all connections together before the largest holders are closed (4105); 0 = 1/64 of memory, 64-1024")
	num(&o.engine.SendBuffer, "send-buffer", "REALTIME_SEND_BUFFER", 256<<10, "most a stream socket's kernel send buffer grows to (SO_SNDBUF, bytes; it starts at 8 KiB); -1 keeps the kernel's autotuning")
	num(&o.compressionThreshold, "compress-threshold", "REALTIME_COMPRESS_THRESHOLD", 1024, "deflate frames of at least this many bytes; -1 disables compression")
	dur(&o.engine.HeartbeatInterval, "heartbeat", "REALTIME_HEARTBEAT", 25*time.Second, "server ping interval")
	num(&o.engine.WindowEvents, "window", "REALTIME_WINDOW", 10000, "in-memory replay window (events)")
	num(&o.engine.MaxSubscriptions, "max-subscriptions", "REALTIME_MAX_SUBSCRIPTIONS", 100, "channels per connection")
	dur(&o.drainTimeout, "drain-timeout", "REALTIME_DRAIN_TIMEOUT", 10*time.Second, "how long shutdown waits for connections to flush")
	o.pprof = pprofFlag(fs)
	registerSecurityFlags(fs, &o.sec)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.retentionBytes = int64(retBytes) << 20
	o.engine.QueueBudget = int64(budgetMB) << 20
	o.engine.CompressionThreshold = o.compressionThreshold
	if o.compressionThreshold == 0 {
		o.engine.CompressionThreshold = 1 // 0 would mean "default"
	}
	return o, nil
}

func newLogger(format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	hopts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, hopts))
}

func run(args []string) error {
	if len(args) > 0 && args[0] == "token" {
		return tokenCommand(args[1:], os.Stdout)
	}
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	log := newLogger(o.logFormat, o.logLevel)
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	srv, err := newServer(ctx, o, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		srv.close()
		return err
	}
	log.Info("realtimed listening", "addr", "http://"+ln.Addr().String(), "stream", "ws://"+ln.Addr().String()+"/v2/realtime/stream")
	return srv.serve(ctx, ln)
}

// server is the wired process: bus, engine and HTTP server.
type server struct {
	o     *options
	log   *slog.Logger
	bus   *bus.JetStream
	eng   *stream.Engine
	sec   *security
	mon   *monitor
	http  *http.Server
	flags *flagsPart // flags.go
	// release frees the data directory's instance lock (identity.go).
	release func()
}

// breakerState is the bus circuit breaker's state for monitoring ("" = none).
func (s *server) breakerState() string { return s.sec.bus.State() }

// longPollRequests counts long-poll requests for monitoring.
func (s *server) longPollRequests() uint64 { return s.eng.Snapshot().LongPollRequests }

func newServer(ctx context.Context, o *options, log *slog.Logger) (*server, error) {
	data, err := filepath.Abs(o.data)
	if err != nil {
		return nil, err
	}
	natsOpts, err := o.natsAuth.Options()
	if err != nil {
		return nil, err
	}
	if o.natsURL == "" && !o.natsAuth.IsZero() {
		return nil, errors.New("NATS credentials and TLS options (-nats-creds, -nats-user, -nats-tls-*, ...) need -nats-url")
	}
	release := func() {}
	if o.instance == "" {
		if o.instance, release, err = instanceIdentity(data); err != nil {
			return nil, err
		}
	}
	b, err := bus.NewJetStream(ctx, bus.Config{
		URL: o.natsURL, DataDir: filepath.Join(data, "nats"), ListenAddr: o.natsListen,
		MaxAge: o.retentionAge, MaxBytes: o.retentionBytes, Replicas: o.replicas, Logger: log,
		NATSOptions: natsOpts,
	})
	if err != nil {
		release()
		return nil, fmt.Errorf("bus: %w", err)
	}
	cfg := o.engine
	cfg.Instance = o.instance
	cfg.Logger = log
	cfg.PublisherKey = o.publisherKey
	if cfg.PublisherKey == "" {
		cfg.PublisherKey = "dev"
		log.Warn("DEV MODE: no -publisher-key set; publishing accepts the key \"dev\". Set REALTIME_PUBLISHER_KEY in production.")
	}
	if o.origins != "" {
		cfg.AcceptOrigins = splitComma(o.origins)
	}
	sec, err := newSecurity(ctx, &o.sec, &cfg, b, log)
	if err != nil {
		b.Close()
		release()
		return nil, err
	}
	mon := newMonitor()
	cfg.OnHealth = mon.onHealth
	eng, err := stream.New(cfg, sec.bus)
	if err != nil {
		sec.close()
		b.Close()
		release()
		return nil, err
	}
	if err := eng.Start(ctx); err != nil {
		sec.close()
		b.Close()
		release()
		return nil, err
	}
	s := &server{o: o, log: log, bus: b, eng: eng, sec: sec, mon: mon, release: release}
	mux := http.NewServeMux()
	eng.Mount(mux)
	if *o.pprof {
		mountPprof(mux)
	}
	sec.mount(mux)
	if err := s.startFlags(ctx, mux); err != nil { // before monitoring: the dashboard shows the flag
		s.close()
		return nil, err
	}
	if err := mon.start(ctx, s, mux); err != nil {
		s.close()
		return nil, err
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("GET /", demoweb.DemoHandler()) // the demo page: pick channels, publish, watch
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	s.http.RegisterOnShutdown(eng.StopPolls) // waiting long-polls answer 503 at once instead of holding the drain
	return s, nil
}

// serve runs until ctx ends, then drains: stop accepting, tell clients to reconnect
// (4101 with a jittered hint), wait for them to flush, close the bus.
func (s *server) serve(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.log.Info("shutting down")
	dctx, cancel := context.WithTimeout(context.Background(), s.o.drainTimeout)
	defer cancel()
	_ = s.http.Shutdown(dctx) // stop accepting; hijacked streams are the engine's
	if derr := s.eng.Shutdown(dctx); derr != nil {
		s.log.Warn("drain incomplete", "err", derr)
	}
	s.close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *server) close() {
	s.closeFlags()
	s.mon.close()
	_ = s.eng.Close()
	s.sec.close()
	_ = s.bus.Close()
	if s.release != nil {
		s.release()
	}
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
