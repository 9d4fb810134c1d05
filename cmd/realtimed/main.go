// Command realtimed is the standalone realtime server: the assembly of package server
// (the same one the Encore services run) on a net/http server, with an embedded NATS
// JetStream, an external NATS (-nats-url) or a PostgreSQL database (-postgres-url) as
// its bus.
//
//	go run ./cmd/realtimed            # http://127.0.0.1:4000, data in ./.realtime
//	go run ./cmd/realtimed -postgres-url postgres://user:pass@db:5432/app   # the Postgres bus
//	go run ./cmd/realtimed -h         # every setting, with its environment variable
//	go run ./cmd/realtimed -version   # module version and commit
//	go run ./cmd/realtimed token ...  # mint a subscriber token
//
// This file only turns flags and environment variables into server.Options, binds the
// port first (a port in use fails at once, and connections that arrive while the bus
// starts wait instead of being refused), serves the result until SIGINT or SIGTERM,
// then drains in two phases (docs/operations.md).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"encore.app/server"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "realtimed:", err)
		os.Exit(1)
	}
}

// errExit ends run with exit status 0 after -h or -version.
var errExit = errors.New("exit")

const usageHead = `realtimed: the realtime streaming server (WebSocket fan-out over NATS JetStream).

Usage:
  realtimed [flags]          serve (every flag also reads its $REALTIME_* variable)
  realtimed token [flags]    mint a subscriber token (realtimed token -h)
  realtimed -version         print the module version and commit
  realtimed -h               this help

Without keys the server runs in dev mode, on loopback only; with keys it needs all
three (-token-keys, -publisher-key, -admin-key). docs/settings.md lists every setting.

Flags:
`

// parseFlags returns the options of args and the environment (see server.Options).
// -h prints the help to out and returns errExit; so does -version.
func parseFlags(args []string, out io.Writer) (server.Options, error) {
	o := server.Defaults()
	fs := flag.NewFlagSet("realtimed", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, usageHead)
		fs.PrintDefaults()
	}
	version := fs.Bool("version", false, "print the module version and commit, then exit")
	envErr := server.RegisterFlags(fs, &o, nil)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, errExit
		}
		return o, err
	}
	if *version {
		fmt.Fprintln(out, versionString())
		return o, errExit
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q (subcommands: token; see realtimed -h)", fs.Arg(0))
	}
	if envErr != nil {
		return o, envErr
	}
	return o, o.Validate()
}

// unknownEnv lists the REALTIME_* variables of environ that name no setting (a typo is
// otherwise silently ignored).
func unknownEnv(environ []string) []string {
	known := map[string]bool{}
	for _, s := range server.Settings() {
		if s.Env != "" {
			known[s.Env] = true
		}
	}
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "REALTIME_") && !known[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func newLogger(format, level string, w io.Writer) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	hopts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "token" {
		return tokenCommand(args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "help" {
		args = []string{"-h"}
	}
	o, err := parseFlags(args, stdout)
	if errors.Is(err, errExit) {
		return nil
	}
	if err != nil {
		return err
	}
	log := newLogger(o.LogFormat, o.LogLevel, stderr)
	slog.SetDefault(log)
	o.Env.Logger = log
	if u := unknownEnv(os.Environ()); len(u) > 0 {
		log.Warn("environment variables that name no setting (typos?) are ignored", "vars", strings.Join(u, ","))
	}

	// The port first: nothing starts when it is taken, and while the bus and the
	// engine start, requests are answered 503 (not refused).
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("-addr ($REALTIME_ADDR): %w", err)
	}
	var h atomic.Pointer[http.Handler]
	starting := http.Handler(http.HandlerFunc(serveStarting))
	h.Store(&starting)
	hs := server.HTTPServer(o, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*h.Load()).ServeHTTP(w, r) }), log)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("realtimed listening (starting)", "addr", "http://"+ln.Addr().String())

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	setup, cancel := context.WithTimeout(context.Background(), time.Minute)
	go func() { // a signal during the set-up cancels it
		select {
		case <-sigs:
			cancel()
		case <-setup.Done():
		}
	}()
	srv, err := server.New(setup, o)
	cancel()
	if err != nil {
		_ = hs.Close()
		return err
	}
	hs.RegisterOnShutdown(srv.StopPolls) // waiting long-polls answer 503 at once instead of holding the drain
	var ready http.Handler = srv
	h.Store(&ready)
	log.Info("realtimed ready", "addr", "http://"+ln.Addr().String(), "stream", "ws://"+ln.Addr().String()+"/v2/realtime/stream")
	return serve(srv, hs, errc, sigs, log)
}

// serveStarting answers every request while the server is being built.
func serveStarting(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		_, _ = w.Write([]byte("ok\n"))
		return
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, "starting", http.StatusServiceUnavailable)
}

// serve waits for a signal (or the server's end), then drains: first /readyz, new
// streams and polls answer 503 + Retry-After for DrainDelay (a second signal ends
// that early) while open connections go on; then clients are told to reconnect
// elsewhere (4101 with a jittered hint), the listener closes, and everything is closed
// once they have gone or DrainTimeout has passed.
func serve(srv *server.Server, hs *http.Server, errc chan error, sigs chan os.Signal, log *slog.Logger) error {
	var err error
	select {
	case <-sigs:
	case err = <-errc:
	}
	o := srv.Options()
	srv.BeginDrain()
	if err == nil && o.DrainDelay > 0 {
		log.Info("draining: answering 503 until the load balancer has noticed", "for", o.DrainDelay.String(), "hurry", "send the signal again")
		t := time.NewTimer(o.DrainDelay)
		select {
		case <-t.C:
		case <-sigs:
		case err = <-errc:
		}
		t.Stop()
	}
	log.Info("shutting down: telling clients to move")
	dctx, cancel := context.WithTimeout(context.Background(), o.DrainTimeout)
	defer cancel()
	shut := make(chan struct{})
	go func() { _ = hs.Shutdown(dctx); close(shut) }() // stop accepting; hijacked streams are the engine's
	if derr := srv.Shutdown(dctx); derr != nil {
		log.Warn("drain incomplete", "err", derr)
	}
	<-shut
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
