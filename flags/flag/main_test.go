package flag

import (
	"context"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Main(m), testutil.LeakOptions()...)
}

// quietLog discards store logs in tests.
var quietLog = testutil.Discard()

// startNATS starts an embedded JetStream server on 127.0.0.1 storing in dir, and stops
// it at the end of the test (or earlier through the returned stop func).
func startNATS(tb testing.TB, dir string) (url string, stop func()) {
	tb.Helper()
	return startNATSPort(tb, dir, -1)
}

// startNATSPort is startNATS on a given port (-1: any free port).
func startNATSPort(tb testing.TB, dir string, port int) (url string, stop func()) {
	tb.Helper()
	s, err := server.NewServer(&server.Options{
		Host:      "127.0.0.1",
		Port:      port,
		JetStream: true,
		StoreDir:  dir,
		NoLog:     true,
		NoSigs:    true,
	})
	if err != nil {
		tb.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(testutil.Patience) {
		s.Shutdown()
		tb.Fatal("nats server not ready")
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			s.Shutdown()
			s.WaitForShutdown()
		}
	}
	tb.Cleanup(stop)
	return s.ClientURL(), stop
}

// connect opens a NATS connection and a JetStream context, closed at test end.
func connect(tb testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(0))
	if err != nil {
		tb.Fatalf("nats connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// openKV opens a KVStore on js, closed at test end.
func openKV(tb testing.TB, js jetstream.JetStream, o Options) *KVStore {
	tb.Helper()
	if o.Logger == nil {
		o.Logger = quietLog
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	s, err := Open(ctx, js, o)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func testCtx(tb testing.TB) context.Context { return testutil.Context(tb) }

func ptr[T any](v T) *T { return &v }
