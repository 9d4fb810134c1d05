package limits

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/auth"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
	"encore.app/realtime/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m), testutil.LeakOptions()...) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

const testSecret = "0123456789abcdef0123456789abcdef-cap"

// instance is one realtime instance: bus, conn cap, engine with auth and guard, server.
type instance struct {
	bus  bus.Bus
	cap  *ConnCap
	eng  *stream.Engine
	srv  *httptest.Server
	url  string
	keys *auth.Keys
}

// capBackend is where the instances' bus and connection cap live: NATS (the first
// instance embeds the server, the others connect to it) or one Postgres database.
type capBackend struct {
	openBus func(t testing.TB) bus.Bus
	openCap func(t testing.TB, b bus.Bus, cfg ConnCapConfig) *ConnCap
}

func natsBackend() *capBackend {
	var url string
	return &capBackend{
		openBus: func(t testing.TB) bus.Bus {
			ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
			defer cancel()
			bcfg := bus.Config{URL: url, Logger: quiet}
			if url == "" {
				bcfg.DataDir, bcfg.ListenAddr = t.TempDir(), "127.0.0.1:0"
			}
			b, err := bus.NewJetStream(ctx, bcfg)
			if err != nil {
				t.Fatal(err)
			}
			if url == "" {
				url = b.ClientURL()
			}
			return b
		},
		openCap: func(t testing.TB, b bus.Bus, cfg ConnCapConfig) *ConnCap {
			js, err := jetstream.New(b.(*bus.JetStream).Conn())
			if err != nil {
				t.Fatal(err)
			}
			cc, err := NewConnCap(context.Background(), js, cfg)
			if err != nil {
				t.Fatal(err)
			}
			return cc
		},
	}
}

func postgresBackend(t testing.TB) *capBackend {
	url := pgtest.DB(t)
	return &capBackend{
		openBus: func(t testing.TB) bus.Bus {
			ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
			defer cancel()
			b, err := bus.OpenPostgres(ctx, url, bus.PostgresConfig{Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		openCap: func(t testing.TB, b bus.Bus, cfg ConnCapConfig) *ConnCap {
			cc, err := NewConnCapPostgres(context.Background(), b.(*bus.Postgres).Pool(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			return cc
		},
	}
}

// forEachBackend runs fn on NATS and on Postgres.
func forEachBackend(t *testing.T, fn func(t *testing.T, be *capBackend)) {
	t.Run("nats", func(t *testing.T) { fn(t, natsBackend()) })
	t.Run("postgres", func(t *testing.T) { fn(t, postgresBackend(t)) })
}

// startInstance starts an engine with its bus and cap on be. configure may change
// the guard.
func (be *capBackend) startInstance(t testing.TB, name string, capCfg ConnCapConfig, configure func(*Guard)) *instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	b := be.openBus(t)
	capCfg.Instance, capCfg.Logger = name, quiet
	cc := be.openCap(t, b, capCfg)
	keys, err := auth.ParseKeys("k1:" + testSecret)
	if err != nil {
		t.Fatal(err)
	}
	a := &auth.Authenticator{Keys: keys}
	g := &Guard{Cap: cc}
	if configure != nil {
		configure(g)
	}
	cfg := stream.Config{Instance: name, Logger: quiet, PublisherKey: "k"}
	cfg.Authenticate, cfg.Authorize, cfg.Reauthenticate = a.Hooks()
	cfg.Admit = g.Admit
	e, err := stream.New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.Handler())
	in := &instance{bus: b, cap: cc, eng: e, srv: srv, keys: keys,
		url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/v2/realtime/stream"}
	t.Cleanup(func() { e.Close(); srv.Close(); cc.Close(); b.Close() })
	return in
}

func (in *instance) token(t testing.TB, user string) string {
	t.Helper()
	tok, err := in.keys.Mint(user, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The per-user cap holds across two instances sharing one NATS: 10 connections spread
// over both, the 11th is refused on either with 4104 and a retry hint; another user is
// unaffected; closing one connection makes room on the other instance.
func TestConnCapAcrossInstances(t *testing.T) { forEachBackend(t, testConnCapAcrossInstances) }

func testConnCapAcrossInstances(t *testing.T, be *capBackend) {
	a := be.startInstance(t, "a", ConnCapConfig{}, nil)
	b := be.startInstance(t, "b", ConnCapConfig{}, nil)
	ctx := testutil.Context(t)
	tok := a.token(t, "42")
	var conns []*rtclient.Conn
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	for i := range 10 {
		in := a
		if i%2 == 1 {
			in = b
		}
		c, err := rtclient.Dial(ctx, in.url, &rtclient.DialOptions{Token: tok})
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		conns = append(conns, c)
	}
	for _, in := range []*instance{a, b} {
		_, err := rtclient.Dial(ctx, in.url, &rtclient.DialOptions{Token: tok})
		if code := rtclient.CloseCode(err); code != protocol.CloseTooMany {
			t.Fatalf("11th on %s: close %d (%v), want 4104", in.eng.Snapshot().Instance, code, err)
		}
		if hint := protocol.RetryHint(rtclient.CloseReason(err)); hint < 15000 || hint > 20000 {
			t.Fatalf("retry hint %d ms, want 15000..20000 (%q)", hint, rtclient.CloseReason(err))
		}
	}
	// Plain HTTP clients get 429 with Retry-After.
	resp, err := http.Get(b.srv.URL + "/v2/realtime/stream?token=" + tok)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != http.StatusTooManyRequests || ra < 15 {
		t.Fatalf("plain GET: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	other, err := rtclient.Dial(ctx, b.url, &rtclient.DialOptions{Token: a.token(t, "43")})
	if err != nil {
		t.Fatalf("another user: %v", err)
	}
	other.CloseNow()

	conns[0].Close() // on a
	testutil.WaitFor(t, "a's connection released", func() bool { return a.cap.Held() == 4 })
	c, err := rtclient.Dial(ctx, b.url, &rtclient.DialOptions{Token: tok})
	if err != nil {
		t.Fatalf("after one closed: %v", err)
	}
	conns = append(conns, c)
	if got := a.eng.Snapshot().Refusals[stream.RefuseTooMany] + b.eng.Snapshot().Refusals[stream.RefuseTooMany]; got != 3 {
		t.Fatalf("too_many_connections refusals %d, want 3", got)
	}
}

// Racing connects of one user over two instances: exactly Max get in.
func TestConnCapRace(t *testing.T) { forEachBackend(t, testConnCapRace) }

func testConnCapRace(t *testing.T, be *capBackend) {
	a := be.startInstance(t, "a", ConnCapConfig{Max: 5}, nil)
	b := be.startInstance(t, "b", ConnCapConfig{Max: 5}, nil)
	ctx := testutil.Context(t)
	tok := a.token(t, "7")
	var wg sync.WaitGroup
	var ok, refused atomic.Int32
	var mu sync.Mutex
	var conns []*rtclient.Conn
	for i := range 16 {
		in := a
		if i%2 == 1 {
			in = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := rtclient.Dial(ctx, in.url, &rtclient.DialOptions{Token: tok})
			switch {
			case err == nil:
				ok.Add(1)
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			case rtclient.CloseCode(err) == protocol.CloseTooMany:
				refused.Add(1)
			default:
				t.Errorf("dial: %v", err)
			}
		}()
	}
	wg.Wait()
	for _, c := range conns {
		c.CloseNow()
	}
	if ok.Load() != 5 || refused.Load() != 11 {
		t.Fatalf("%d admitted, %d refused; want 5 and 11", ok.Load(), refused.Load())
	}
}

// A dead instance's entries expire after TTL: its users can connect elsewhere again.
// The live instance's heartbeat keeps its own entries beyond TTL.
func TestConnCapDeadInstanceExpires(t *testing.T) { forEachBackend(t, testConnCapDeadInstanceExpires) }

func testConnCapDeadInstanceExpires(t *testing.T, be *capBackend) {
	// TTL 3 s with a refresh every 300 ms: a loaded machine can stall the heartbeat for
	// seconds, or take long between two dials, without changing the outcome.
	const ttl, heartbeat = 3 * time.Second, 300 * time.Millisecond
	a := be.startInstance(t, "a", ConnCapConfig{Max: 2, TTL: ttl, Heartbeat: heartbeat}, nil)
	ctx := testutil.Context(t)
	dead := be.openCap(t, a.bus, ConnCapConfig{Max: 2, TTL: ttl, Heartbeat: heartbeat, Logger: quiet})
	// The "dead" instance holds one connection and stops heartbeating without releasing.
	if _, _, err := dead.Acquire(ctx, "9"); err != nil {
		t.Fatal(err)
	}
	dead.Close()
	tok := a.token(t, "9")
	liveAt := time.Now()
	live, err := rtclient.Dial(ctx, a.url, &rtclient.DialOptions{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer live.CloseNow()
	_, err = rtclient.Dial(ctx, a.url, &rtclient.DialOptions{Token: tok})
	if rtclient.CloseCode(err) != protocol.CloseTooMany {
		t.Fatalf("while the dead entry lives: %v", err)
	}
	start := time.Now()
	var c *rtclient.Conn
	testutil.WaitFor(t, "dead entry to expire", func() bool {
		c, err = rtclient.Dial(ctx, a.url, &rtclient.DialOptions{Token: tok})
		return err == nil
	})
	defer c.CloseNow()
	t.Logf("admitted %v after the dead instance stopped (TTL %v)", time.Since(start).Round(100*time.Millisecond), ttl)
	// Both live connections stay registered past TTL thanks to the heartbeat: wait
	// until the first one is older than TTL (and a third of it more).
	time.Sleep(time.Until(liveAt.Add(ttl + ttl/3)))
	_, err = rtclient.Dial(ctx, a.url, &rtclient.DialOptions{Token: tok})
	if rtclient.CloseCode(err) != protocol.CloseTooMany {
		t.Fatalf("live entries expired despite the heartbeat: %v", err)
	}
}

// Connect rates: per user closed 4102 with retry=<ms>, and authenticated connects are
// never charged to their address (guard_test.go has the anonymous, per-address
// budgets); the overload gate closes 4103 with a jittered hint and still admits a
// resuming session.
func TestGuardRatesAndGate(t *testing.T) {
	// The limiters' clock stands still: no token comes back however long the test takes.
	frozen := time.Now()
	clock := func() time.Time { return frozen }
	in := natsBackend().startInstance(t, "a", ConnCapConfig{}, func(g *Guard) {
		g.IPRate = NewKeyedLimiter(0.1, 1, 0, clock) // would refuse the second connect if users were charged by address
		g.UserRate = NewKeyedLimiter(0.1, 3, 0, clock)
		g.Gate = NewGate(GateConfig{MaxConnections: 5, ResumeShare: 0.2})
	})
	ctx := testutil.Context(t)
	var conns []*rtclient.Conn
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	dial := func(user string, cur *protocol.Cursor) error {
		o := &rtclient.DialOptions{Token: in.token(t, user)}
		if cur != nil {
			o.Channels, o.Cursor = []string{"public:x"}, cur
		}
		c, err := rtclient.Dial(ctx, in.url, o)
		if err == nil {
			conns = append(conns, c)
		}
		return err
	}
	for i := range 3 {
		if err := dial("1", nil); err != nil {
			t.Fatalf("user 1 connect %d: %v", i, err)
		}
	}
	err := dial("1", nil)
	if rtclient.CloseCode(err) != protocol.CloseRateLimited || protocol.RetryHint(rtclient.CloseReason(err)) < 1000 {
		t.Fatalf("4th connect of user 1: %v (%q)", err, rtclient.CloseReason(err))
	}
	// Gate: 5 places, 4 for new sessions; 3 are taken.
	if err := dial("2", nil); err != nil {
		t.Fatal(err)
	}
	err = dial("3", nil)
	if rtclient.CloseCode(err) != protocol.CloseOverloaded || protocol.RetryHint(rtclient.CloseReason(err)) < 1000 {
		t.Fatalf("new session over the share: %v", err)
	}
	if err := dial("4", &protocol.Cursor{Seq: 0, Epoch: in.eng.Epoch()}); err != nil {
		t.Fatalf("resuming session refused: %v", err)
	}
	// Long-polls use the same Authenticate hook but are not charged to the connect rates.
	for range 3 {
		resp, err := http.Get(in.srv.URL + "/v2/realtime/poll?channels=public:x&timeout=0&token=" + in.token(t, "1"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("poll after the connect limits were hit: %d", resp.StatusCode)
		}
	}
	s := in.eng.Snapshot()
	if s.Refusals[stream.RefuseRateLimited] != 1 || s.Refusals[stream.RefuseOverloaded] != 1 {
		t.Fatalf("refusals %v", s.Refusals)
	}
}
