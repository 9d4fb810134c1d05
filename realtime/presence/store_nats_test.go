package presence

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"encore.app/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.LeakOptions()...)
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

// Two trackers on one NATS through their own connections: joins and leaves reach the
// other's watcher, snapshots read the bucket, a dead tracker's members lapse and its
// summaries are purged.
func TestNATSStore(t *testing.T) {
	srv := embedded(t)
	const ttl = time.Second
	mod := func(c *Config) { c.TTL, c.Grace = ttl, 100*time.Millisecond }
	sa, sb := natsStore(t, srv, ttl), natsStore(t, srv, ttl)
	a := start(t, sa, "inst-a", mod)
	b := start(t, sb, "inst-b", mod)
	var d diffs
	stop := a.Watch("user:42:inbox", d.fn)
	defer stop()

	b.Join("user:42:inbox", "42")
	b.Join("user:42:inbox", "")
	testutil.WaitFor(t, "the join", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.got) > 0
	})
	if got := d.take(); got != "+42" {
		t.Fatalf("join: %q", got)
	}
	// A channel nobody follows: read from the bucket (with a's own members).
	b.Join("public.x", "7")
	a.Join("public.x", "8")
	testutil.WaitFor(t, "b's summary of public.x", func() bool {
		return snapshot(t, a, "public.x", 10).Users == 2
	})
	s := snapshot(t, a, "public.x", 1)
	if s.Conns != 2 || len(s.Members) != 1 || !s.Truncated || s.Members[0].User != "7" {
		t.Fatalf("snapshot %+v", s)
	}
	// A removal is a delete whose body says whose: followers see it, loads skip it.
	b.Leave("public.x", "7")
	testutil.WaitFor(t, "the leave of 7", func() bool { return snapshot(t, a, "public.x", 10).Users == 1 })

	// b dies without withdrawing anything: its members lapse, a purges its summaries.
	b.Close()
	testutil.WaitFor(t, "b's members to lapse", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.got) > 0
	})
	if got := d.take(); got != "-42" {
		t.Fatalf("after b died: %q", got)
	}
	testutil.WaitFor(t, "the purge", func() bool { return a.Stats().Purges == 1 })
	sums, err := sa.Load(context.Background(), "user:42:inbox")
	if err != nil || len(sums) != 0 {
		t.Fatalf("stored after the purge: %v %+v", err, sums)
	}
	if st := a.Stats(); len(st.Instances) != 1 || st.Channels != 1 || st.Followed != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// A NATS restart loses the memory-backed buckets and every subscription: the stores
// reconnect, the next writes create the buckets again, the follows are reloaded, and
// joins flow again between the two trackers.
func TestNATSStoreSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
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

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
