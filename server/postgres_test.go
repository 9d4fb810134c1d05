package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/pgmigrations"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// Which bus the settings select (Options.EffectiveBus), and what Validate refuses.
func TestBusSelection(t *testing.T) {
	pool := func() (*pgxpool.Pool, error) { return nil, errors.New("not opened in this test") }
	for _, tc := range []struct {
		name string
		edit func(*Options)
		bus  string // "" with want: refused
		want string // part of the error
	}{
		{"standalone default: embedded NATS", func(o *Options) {}, BusNATS, ""},
		{"postgres URL", func(o *Options) { o.PostgresURL = "postgres://db/rt" }, BusPostgres, ""},
		{"NATS URL", func(o *Options) { o.NATSURL = "nats://n:4222" }, BusNATS, ""},
		{"both URLs", func(o *Options) { o.NATSURL, o.PostgresURL = "nats://n:4222", "postgres://db/rt" }, "",
			"-nats-url ($REALTIME_NATS_URL) and -postgres-url ($REALTIME_POSTGRES_URL) are both set"},
		{"both URLs, bus chosen", func(o *Options) { o.Bus, o.NATSURL, o.PostgresURL = BusNATS, "nats://n:4222", "postgres://db/rt" }, "",
			"-postgres-url ($REALTIME_POSTGRES_URL): set, but the bus is nats"},
		{"postgres without a database", func(o *Options) { o.Bus = BusPostgres }, "", "postgres needs -postgres-url"},
		{"postgres with a NATS listener", func(o *Options) { o.PostgresURL, o.NATSListen = "postgres://db/rt", "127.0.0.1:4222" }, "",
			"-nats-listen ($REALTIME_NATS_LISTEN): there is no NATS server with the Postgres bus"},
		{"postgres with replicas", func(o *Options) { o.PostgresURL, o.Replicas = "postgres://db/rt", 3 }, "", "stream replicas are NATS's"},
		{"postgres with NATS credentials", func(o *Options) { o.PostgresURL, o.NATSToken = "postgres://db/rt", "tok" }, "",
			"NATS credentials and TLS options"},
		{"unknown bus", func(o *Options) { o.Bus = "kafka" }, "", `unknown bus "kafka" (known: auto, nats, postgres)`},
		{"encore: the app's database", func(o *Options) { o.Env = Environment{Shell: Encore, Postgres: pool} }, BusPostgres, ""},
		{"encore deployed: the app's database passes the guard", func(o *Options) {
			o.Env = Environment{Shell: Encore, Hosted: true, Postgres: pool}
		}, BusPostgres, ""},
		{"encore: the NATSURL secret", func(o *Options) {
			o.Env, o.NATSURL = Environment{Shell: Encore, Postgres: pool}, "nats://n:4222"
		}, BusNATS, ""},
		{"encore: embedded NATS chosen locally", func(o *Options) { o.Env, o.Bus = Environment{Shell: Encore, Postgres: pool}, BusNATS }, BusNATS, ""},
		{"encore deployed: embedded NATS chosen", func(o *Options) {
			o.Env, o.Bus = Environment{Shell: Encore, Hosted: true, Postgres: pool}, BusNATS
		}, "", `Use the app's database (Bus in realtime/config.cue: "postgres" or "auto", the default)`},
		{"encore: postgres and the NATSURL secret", func(o *Options) {
			o.Env, o.Bus, o.NATSURL = Environment{Shell: Encore, Postgres: pool}, BusPostgres, "nats://n:4222"
		}, "", "the secret NATSURL: set, but the bus is postgres (Bus in realtime/config.cue)"},
		{"bad namespace", func(o *Options) { o.PostgresURL, o.Env.Namespace = "postgres://db/rt", "Has Space" }, "", `namespace "Has Space"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Defaults()
			tc.edit(&o)
			err := o.Validate()
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("want an error with %q, got %v", tc.want, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := o.EffectiveBus(); got != tc.bus {
				t.Fatalf("bus %q, want %q", got, tc.bus)
			}
		})
	}
}

// pgServer is a server on the Postgres bus behind a loopback httptest server.
type pgServer struct {
	srv  *Server
	hs   *httptest.Server
	ws   string
	name string
}

// pgAdminKey is the keyed servers' admin key (a keyed server refuses the dev key).
const pgAdminKey = "pg-admin-key-0123456789abcdef"

func startPostgresServer(t *testing.T, name string, edit func(*Options)) *pgServer {
	t.Helper()
	o, err := parseArgs(t, nil, "-data", t.TempDir(), "-instance", name, "-admin-key", pgAdminKey,
		"-publisher-key", "test-pub", "-token-keys", testKeys, "-max-conns-per-user", "1", "-ip-connect-rate", "0")
	if err != nil {
		t.Fatal(err)
	}
	edit(&o)
	o.Env.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.Close(); s.Close() })
	return &pgServer{srv: s, hs: hs, ws: "ws" + strings.TrimPrefix(hs.URL, "http") + "/v2/realtime/stream", name: name}
}

func (p *pgServer) get(t *testing.T, path, key string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.hs.URL+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func (p *pgServer) rollout(t *testing.T) int {
	t.Helper()
	var body struct {
		Flags []struct {
			Name    string
			Rollout int
		}
	}
	p.get(t, "/v2/flags/admin", pgAdminKey, &body)
	for _, f := range body.Flags {
		if f.Name == "realtime-streaming-v2" {
			return f.Rollout
		}
	}
	t.Fatalf("no realtime-streaming-v2 on %s", p.name)
	return 0
}

func (p *pgServer) instances(t *testing.T) []string {
	t.Helper()
	ov := p.srv.Overview()
	var names []string
	for _, r := range ov.Overview.InstanceRows {
		names = append(names, r.Instance)
	}
	return names
}

// Everything the NATS backend feeds comes from Postgres on the Postgres bus, and no
// NATS server is started: two servers on one database (-postgres-url, the standalone
// path) share the events, the flags, the fleet and the per-user cap; a third on the
// same database through a pool the shell gives (Env.Postgres, the Encore path) in
// another namespace shares none of it.
func TestPostgresBackend(t *testing.T) {
	leakCheck(t)
	srv := pgtest.Start(t, pgtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url, err := srv.NewDB(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := startPostgresServer(t, "pg-a", func(o *Options) { o.PostgresURL = url })
	b := startPostgresServer(t, "pg-b", func(o *Options) { o.PostgresURL = url })

	for _, s := range []*pgServer{a, b} {
		if o := s.srv.Options(); o.EffectiveBus() != BusPostgres {
			t.Fatalf("%s: bus %q", s.name, o.EffectiveBus())
		}
		if _, err := os.Stat(filepath.Join(s.srv.DataDir(), "nats")); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: a NATS store in the data directory: %v", s.name, err)
		}
		if !s.srv.be.Connected() {
			t.Fatalf("%s: the breaker's probe says disconnected", s.name)
		}
	}
	// Presence is on: its store is the database too.
	if a.srv.pres == nil || b.srv.pres == nil {
		t.Fatal("presence off on the Postgres bus")
	}
	buf := make([]byte, 1<<22)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "nats-server") || strings.Contains(stacks, "nats.go") {
		t.Fatal("a NATS server or client runs on the Postgres bus")
	}

	// Events: published through a, received by a client of b.
	c, err := rtclient.Dial(ctx, b.ws, &rtclient.DialOptions{Channels: []string{"orders.1"}, Token: mint(t, "7", "orders.*")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if f, err := c.ReadFrame(ctx); err != nil || f.Type != protocol.TypeSubscribed {
		t.Fatalf("subscribe: %+v %v", f, err)
	}
	acks, err := a.srv.Publish(ctx, []*protocol.Event{{ID: "e1", Channel: "orders.1", Data: json.RawMessage(`1`)}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Events) > 0 {
			if f.Events[0].ID != "e1" || f.Events[0].Seq != acks[0].Seq {
				t.Fatalf("got %+v, acked %+v", f.Events[0], acks[0])
			}
			break
		}
	}

	// Presence: user 7, connected to b, is a member of orders.1 on a.
	testutil.WaitFor(t, "a to list b's member", func() bool {
		st, snap := pgPresence(t, a.hs.URL, "orders.1", mint(t, "8", "orders.*"))
		return st == http.StatusOK && snap.Users == 1 && len(snap.Members) == 1 && snap.Members[0].User == "7"
	})

	// The per-user cap counts across instances: user 7 holds its one connection on b.
	if _, err := rtclient.Dial(ctx, a.ws, &rtclient.DialOptions{Token: mint(t, "7", "orders.*")}); rtclient.CloseCode(err) != protocol.CloseTooMany {
		t.Fatalf("second connection of user 7 on another instance: %v, want closed %d by the cap", err, protocol.CloseTooMany)
	}

	// Flags: changed on a, seen by b.
	req, _ := http.NewRequest(http.MethodPut, a.hs.URL+"/v2/flags/admin/realtime-streaming-v2", strings.NewReader(`{"rollout":40,"reason":"pg test"}`))
	req.Header.Set("Authorization", "Bearer "+pgAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("flag change: %d", resp.StatusCode)
	}
	testutil.WaitFor(t, "b to see the rollout", func() bool { return b.rollout(t) == 40 })

	// Fleet health: each sees both.
	for _, s := range []*pgServer{a, b} {
		testutil.WaitFor(t, s.name+" to see both instances", func() bool { return len(s.instances(t)) == 2 })
	}

	// The Encore path: a pool of the shell's, migrated by the shell, another namespace.
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pgmigrations.Apply(ctx, pool); err != nil {
		t.Fatal(err)
	}
	n := startPostgresServer(t, "pg-ns", func(o *Options) {
		o.Env.Shell = Encore
		o.Env.Postgres = func() (*pgxpool.Pool, error) { return pool, nil }
		o.Env.Namespace = "t1"
	})
	if o := n.srv.Options(); o.EffectiveBus() != BusPostgres {
		t.Fatalf("encore path: bus %q", o.EffectiveBus())
	}
	if n.srv.Engine().Epoch() == a.srv.Engine().Epoch() {
		t.Fatal("another namespace shares the stream")
	}
	if r := n.rollout(t); r != 100 {
		t.Fatalf("another namespace sees the flags of the first: rollout %d", r)
	}
	testutil.WaitFor(t, "the namespaced server to see itself", func() bool { return len(n.instances(t)) == 1 })
	if got := n.instances(t); got[0] != "pg-ns" {
		t.Fatalf("namespaced fleet: %v", got)
	}
	if got := a.instances(t); len(got) != 2 {
		t.Fatalf("the first namespace's fleet: %v", got)
	}
	if st, snap := pgPresence(t, n.hs.URL, "orders.1", mint(t, "8", "orders.*")); st != http.StatusOK || snap.Users != 0 {
		t.Fatalf("another namespace sees the presence of the first: %d %+v", st, snap)
	}
	n.hs.Close()
	n.srv.Close()
	if err := pool.Ping(ctx); err != nil {
		t.Fatalf("the server closed the shell's pool: %v", err)
	}
}

// pgPresence asks base's presence endpoint for channel's snapshot.
func pgPresence(t *testing.T, base, channel, token string) (int, protocol.PresenceSnapshot) {
	t.Helper()
	var snap protocol.PresenceSnapshot
	resp, err := http.Get(base + "/v2/realtime/presence?channel=" + channel + "&token=" + token)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, snap
}
