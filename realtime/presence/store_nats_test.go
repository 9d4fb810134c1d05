package presence

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Main(m), testutil.LeakOptions()...)
}

// embedded starts an in-process JetStream server (no listener).
func embedded(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), DontListen: true, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return srv
}

func natsStore(t *testing.T, srv *server.Server, ttl time.Duration) *NATSStore {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testutil.Context(t)
	st, err := NewNATSStore(ctx, nc, NATSConfig{TTL: ttl, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close(); nc.Close() })
	return st
}

// The store contract (store_contract_test.go) on one NATS, each store on its own
// connection.
func TestNATSStore(t *testing.T) {
	srv := embedded(t)
	testStoreContract(t, func(t *testing.T, ttl time.Duration) Store { return natsStore(t, srv, ttl) })
}

// A NATS restart loses the memory-backed buckets and every subscription: the stores
// reconnect, the next writes create the buckets again, the follows are reloaded, and
// joins flow again between the two trackers.
func TestNATSStoreSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	port := testutil.FreePort(t)
	run := func() *server.Server {
		srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		if !srv.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats not ready")
		}
		return srv
	}
	srv := run()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	connect := func() *NATSStore {
		nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		ctx := testutil.Context(t)
		st, err := NewNATSStore(ctx, nc, NATSConfig{TTL: 3 * time.Second, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close(); nc.Close() })
		return st
	}
	mod := func(c *Config) { c.TTL, c.Grace, c.Timeout = 3*time.Second, 100*time.Millisecond, 500*time.Millisecond }
	a := start(t, connect(), "inst-a", mod)
	b := start(t, connect(), "inst-b", mod)
	var d diffs
	defer a.Watch("room", d.fn)()
	got := func(want string) func() bool {
		return func() bool {
			d.mu.Lock()
			defer d.mu.Unlock()
			return slices.Contains(d.got, want)
		}
	}
	b.Join("room", "u1")
	testutil.WaitFor(t, "u1's join", got("+u1"))
	srv.Shutdown()
	srv.WaitForShutdown()
	srv = run()
	b.Join("room", "u2")
	testutil.WaitFor(t, "u2's join after the restart", got("+u2"))
	if s := snapshot(t, a, "room", 10); s.Users != 2 {
		t.Fatalf("after the restart: %+v", s)
	}
}
