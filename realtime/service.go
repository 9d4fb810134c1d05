// Service realtime streams events to browsers over one WebSocket per tab, fed by the
// realtime-events topic through a bus that every instance reads.
//
// This package is the Encore shell of the assembly in encore.app/server: config and
// secrets (config_gen.go, config.cue), endpoint declarations (api.go), the topic and its
// subscription (pubsub.go) and the auth handler (auth.go). The process's one
// server.Server is built here, on first use by any service (Server).
package realtime

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"encore.dev"
	"encore.dev/rlog"
	"encore.dev/shutdown"

	"encore.app/server"
)

//encore:service
type Service struct {
	srv *server.Server
}

func initService() (*Service, error) {
	srv, err := Server()
	if err != nil {
		return nil, err
	}
	return &Service{srv: srv}, nil
}

// Shutdown drains the process's server: every socket is told to reconnect after a
// jittered delay (4101), then the bus and the data directory are released. Encore
// calls it on SIGINT/SIGTERM and on live reload, not when `encore run` is stopped.
func (s *Service) Shutdown(p shutdown.Progress) error {
	// ForceShutdown ends with Encore's shutdown window (the other contexts of p end as
	// soon as no request is running: a WebSocket is not one, its handler returned).
	if err := s.srv.Shutdown(p.ForceShutdown); err != nil {
		rlog.Warn("drain incomplete", "err", err)
	}
	return nil
}

var (
	shared   atomic.Pointer[server.Server]
	sharedMu sync.Mutex // held while building
)

// Server returns the process's realtime server, building it on first use from the
// Encore config and secrets. Every service of the app (flags, monitoring, dashboard)
// reaches it here, so there is one engine, one bus and one flag store per process. A
// failed build is not remembered: the next call tries again.
func Server() (*server.Server, error) {
	if s := shared.Load(); s != nil {
		return s, nil
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if s := shared.Load(); s != nil {
		return s, nil
	}
	opts, err := options()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := server.New(ctx, opts)
	if err != nil {
		rlog.Error("realtime: cannot start", "err", err)
		return nil, err
	}
	shared.Store(s)
	return s, nil
}

// Serve hands a request to the process's server: the body of every raw endpoint.
func Serve(w http.ResponseWriter, req *http.Request) {
	s, err := Server()
	if err != nil {
		http.Error(w, "realtime server unavailable", http.StatusServiceUnavailable)
		return
	}
	s.ServeHTTP(w, req)
}

// options maps the config and secrets onto server.Options. Local development
// (`encore run`, `encore test`) may use dev keys and the embedded NATS; a deployment
// may not (server.Environment.Hosted). The data directory is under the app root, so
// every checkout has its own; tests get a fresh one per process.
func options() (server.Options, error) {
	meta := encore.Meta()
	env := server.Environment{
		Hosted:   meta.Environment.Cloud != encore.CloudLocal,
		Root:     appRoot(),
		LockWait: 15 * time.Second, // a live reload starts us before the old process is gone
		Logger:   slog.Default(),
	}
	o, err := server.FromEncore(cfg, &secrets, env)
	if err != nil {
		return o, err
	}
	if meta.Environment.Type == encore.EnvTest {
		if o.DataDir, err = server.TempDataDir("realtime-encore-test-"); err != nil {
			return o, err
		}
	}
	return o, nil
}

// appRoot is the directory holding encore.app at or above the working directory
// (`encore run` starts the app where it was called), else the working directory.
func appRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "encore.app")); err == nil {
			return dir
		} else if !errors.Is(err, os.ErrNotExist) || filepath.Dir(dir) == dir {
			return wd
		}
	}
}
