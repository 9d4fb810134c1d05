// Service realtime streams events to browsers over one WebSocket per tab, fed by the
// realtime-events topic through a bus that every instance reads.
//
// This package is the Encore shell of the assembly in encore.app/server: config and
// secrets (config_gen.go, config.cue), endpoint declarations (api.go), the topic and its
// subscription (pubsub.go) and the auth handler (auth.go). The process's one
// server.Server is built here, on first use by any service (Server).
package realtime

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"encore.dev"
	"encore.dev/rlog"
	"encore.dev/shutdown"
	"encore.dev/storage/sqldb"

	"encore.app/server"
)

// db is the realtime service's database, provisioned and migrated by Encore (locally
// with Docker, or the Postgres that ENCORE_SQLDB_HOST names; in Encore Cloud and
// self-hosted deployments like any Encore database). With the default Bus "auto" the
// events, flags, fleet health and connection cap live here unless the NATSURL secret
// names a NATS (docs/encore.md "The bus").
var db = sqldb.NewDatabase("realtime", sqldb.DatabaseConfig{Migrations: "./pgmigrations"})

//encore:service
type Service struct {
	srv *server.Server
}

//lint:ignore U1000 Encore's generated code calls initService
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

var shared server.Shared

// Server returns the process's realtime server, building it on first use from the
// Encore config and secrets. Every service of the app (flags, monitoring, dashboard)
// reaches it here: one engine, one bus and one flag store per process.
func Server() (*server.Server, error) {
	s, err := shared.Get(options)
	if err != nil {
		rlog.Error("realtime: cannot start", "err", err)
	}
	return s, err
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
// may not (server.Environment.Hosted). The database is the server's for the Postgres
// bus. The data directory is under the app root, so every checkout has its own; test
// processes get a fresh one each, and a namespace of their own in the test database,
// which every test process of `encore test` shares.
func options() (server.Options, error) {
	meta := encore.Meta()
	wd, _ := os.Getwd()
	o, err := server.FromEncore(cfg, &secrets, server.Environment{
		Hosted:   meta.Environment.Cloud != encore.CloudLocal,
		Root:     server.AppRoot(wd),
		LockWait: 15 * time.Second, // a live reload starts us before the old process is gone
		Logger:   slog.Default(),
		Postgres: func() (*pgxpool.Pool, error) { return sqldb.Driver[*pgxpool.Pool](db), nil },
	})
	if err == nil && meta.Environment.Type == encore.EnvTest {
		o.DataDir, err = server.TempDataDir("realtime-encore-test-")
		var b [6]byte
		_, _ = rand.Read(b[:])
		o.Env.Namespace = "test-" + hex.EncodeToString(b[:])
	}
	return o, err
}
