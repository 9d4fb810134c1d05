package bus_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"encore.app/internal/pgtest"
	"encore.app/realtime/bus"
	"encore.app/realtime/bus/bustest"
)

// The same contract (realtime/bus/bustest) runs against every Bus implementation.

func TestContractJetStream(t *testing.T) {
	bustest.Run(t, func(t *testing.T, _ bool) *bustest.Backend {
		srv := bustest.Start(t)
		return &bustest.Backend{
			Open: func(t testing.TB, o bustest.Options) bus.Bus {
				b, err := bus.NewJetStream(bustest.Ctx(t, 20*time.Second), bus.Config{URL: srv.URL(),
					MaxAge: o.MaxAge, MaxBytes: o.MaxBytes, DupWindow: o.DupWindow, Logger: logger(t)})
				if err != nil {
					t.Fatalf("NewJetStream: %v", err)
				}
				t.Cleanup(func() { _ = b.Close() })
				return b
			},
			DeleteStream: func(t testing.TB) {
				nc, err := nats.Connect(srv.URL())
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				js, _ := jetstream.New(nc)
				if err := js.DeleteStream(bustest.Ctx(t, 10*time.Second), bus.DefaultStream); err != nil {
					t.Fatal(err)
				}
			},
			Stop:  func(testing.TB) { srv.Stop() },
			Start: func(testing.TB) { srv.Restart() },
		}
	})
}

func TestContractPostgres(t *testing.T) {
	bustest.Run(t, func(t *testing.T, faults bool) *bustest.Backend {
		var srv *pgtest.Server
		var url string
		if faults {
			srv = pgtest.Start(t, pgtest.Options{})
			url = srv.DB(t)
		} else {
			url = pgtest.DB(t)
		}
		be := &bustest.Backend{
			Open: func(t testing.TB, o bustest.Options) bus.Bus {
				b, err := bus.OpenPostgres(bustest.Ctx(t, 20*time.Second), url, bus.PostgresConfig{
					MaxAge: o.MaxAge, MaxBytes: o.MaxBytes, DupWindow: o.DupWindow,
					PollInterval: 200 * time.Millisecond, Logger: logger(t)})
				if err != nil {
					t.Fatalf("OpenPostgres: %v", err)
				}
				t.Cleanup(func() { _ = b.Close() })
				return b
			},
			DeleteStream: func(t testing.TB) {
				ctx := bustest.Ctx(t, 10*time.Second)
				c, err := pgx.Connect(ctx, url)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close(context.Background())
				if _, err := c.Exec(ctx, `DELETE FROM realtime_streams WHERE name = $1`, bus.DefaultPostgresStream); err != nil {
					t.Fatal(err)
				}
			},
		}
		if srv != nil {
			be.Stop = func(testing.TB) { srv.Crash() }
			be.Start = func(t testing.TB) {
				if err := srv.Restart(); err != nil {
					t.Fatal(err)
				}
			}
		}
		return be
	})
}

// logger writes the buses' warnings to the test log.
func logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
