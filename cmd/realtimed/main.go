// Command realtimed is the standalone realtime server: the assembly of package server
// (the same one the Encore services run) on a net/http server, with an embedded NATS
// JetStream, an external NATS (-nats-url) or a PostgreSQL database (-postgres-url) as
// its bus.
//
//	go run ./cmd/realtimed            # http://127.0.0.1:4000, data in ./.realtime
//	go run ./cmd/realtimed -postgres-url postgres://user:pass@db:5432/app   # the Postgres bus
//	go run ./cmd/realtimed -h         # every setting, with its environment variable
//	go run ./cmd/realtimed token ...  # mint a subscriber token
//
// This file only turns flags and environment variables into server.Options and serves
// the result until SIGINT or SIGTERM, then drains.
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
	"syscall"
	"time"

	"encore.app/server"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "realtimed:", err)
		os.Exit(1)
	}
}

// parseFlags returns the options of args and the environment (see server.Options).
func parseFlags(args []string) (server.Options, error) {
	o := server.Defaults()
	fs := flag.NewFlagSet("realtimed", flag.ContinueOnError)
	if err := server.RegisterFlags(fs, &o, nil); err != nil {
		return o, err
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	return o, o.Validate()
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
	log := newLogger(o.LogFormat, o.LogLevel)
	slog.SetDefault(log)
	o.Env.Logger = log
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	setup, cancel := context.WithTimeout(ctx, time.Minute)
	srv, err := server.New(setup, o)
	cancel()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		srv.Close()
		return err
	}
	log.Info("realtimed listening", "addr", "http://"+ln.Addr().String(), "stream", "ws://"+ln.Addr().String()+"/v2/realtime/stream")
	return serve(ctx, srv, ln, log)
}

// serve runs srv on ln until ctx ends, then drains: stop accepting, tell clients to
// reconnect (4101 with a jittered hint), wait for them to flush, close everything.
func serve(ctx context.Context, srv *server.Server, ln net.Listener, log *slog.Logger) error {
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	hs.RegisterOnShutdown(srv.StopPolls) // waiting long-polls answer 503 at once instead of holding the drain
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	log.Info("shutting down")
	dctx, cancel := context.WithTimeout(context.Background(), srv.Options().DrainTimeout)
	defer cancel()
	_ = hs.Shutdown(dctx) // stop accepting; hijacked streams are the engine's
	if derr := srv.Shutdown(dctx); derr != nil {
		log.Warn("drain incomplete", "err", derr)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
