package auth

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
	"encore.app/realtime/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testutil.LeakOptions()...) }

// server is an engine with the Authenticator's hooks on a real embedded JetStream
// behind a real loopback HTTP server.
type server struct {
	eng *stream.Engine
	srv *httptest.Server
	url string
}

func startServer(t testing.TB, a *Authenticator) *server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	log := testutil.Logger(t)
	b, err := bus.NewJetStream(ctx, bus.Config{DataDir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.Config{Logger: log, PublisherKey: "k"}
	cfg.Authenticate, cfg.Authorize, cfg.Reauthenticate = a.Hooks()
	e, err := stream.New(cfg, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.Handler())
	t.Cleanup(func() { e.Close(); srv.Close(); b.Close() })
	return &server{eng: e, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/v2/realtime/stream"}
}

func (s *server) publish(t testing.TB, channel, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	if _, err := s.eng.Publish(ctx, []*protocol.Event{{ID: id, Channel: channel}}); err != nil {
		t.Fatal(err)
	}
}

// next reads frames until one of type typ, skipping pings.
func next(t testing.TB, ctx context.Context, c *rtclient.Conn, typ string) *rtclient.Frame {
	t.Helper()
	for {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if f.Type == typ {
			return f
		}
		if f.Type != protocol.TypePing {
			t.Fatalf("got %s frame %+v, want %s", f.Type, f, typ)
		}
	}
}

func results(f *rtclient.Frame) map[string]string {
	m := map[string]string{}
	for _, r := range f.Results {
		if r.OK {
			m[r.Channel] = "ok"
		} else {
			m[r.Channel] = r.Code
		}
	}
	return m
}

// Refused tokens get a close code a browser can read (4401 do not retry, 4200 refresh),
// and plain HTTP requests get 401.
func TestStreamRefusesBadTokens(t *testing.T) {
	keys := testKeys(t, "k1:"+secretA, time.Now())
	keys.Now = nil
	s := startServer(t, &Authenticator{Keys: keys})
	ctx := testutil.Context(t)
	forger := testKeys(t, "k1:"+secretB, time.Now())
	forged := mustMint(t, forger, "42")
	expiredKeys := testKeys(t, "k1:"+secretA, time.Now().Add(-2*time.Hour))
	expired := mustMint(t, expiredKeys, "42") // expired an hour ago
	for _, tc := range []struct {
		name, token string
		cookie      bool
		code        protocol.CloseCode
	}{
		{"none", "", false, protocol.CloseUnauthorize},
		{"forged", forged, false, protocol.CloseUnauthorize},
		{"malformed", "abc.def", false, protocol.CloseUnauthorize},
		{"expired", expired, false, protocol.CloseTokenExpire},
		{"expired cookie", expired, true, protocol.CloseTokenExpire},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &rtclient.DialOptions{}
			if tc.cookie {
				o.Header = http.Header{"Cookie": {TokenCookie + "=" + tc.token}}
			} else {
				o.Token = tc.token
			}
			c, err := rtclient.Dial(ctx, s.url, o)
			if err == nil {
				c.CloseNow()
				t.Fatal("connected")
			}
			if got := rtclient.CloseCode(err); got != tc.code {
				t.Fatalf("close code %d (%v), want %d", got, err, tc.code)
			}
			if a := protocol.ActionFor(rtclient.CloseCode(err)); tc.code == protocol.CloseTokenExpire && a != protocol.ActionRefreshToken {
				t.Fatalf("action %v", a)
			}
		})
	}
	resp, err := http.Get(s.srv.URL + "/v2/realtime/stream?token=" + forged)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "invalid token") {
		t.Fatalf("plain GET: %d %s", resp.StatusCode, body)
	}
	if got := s.eng.Snapshot().Refusals[stream.RefuseAuth]; got != 6 {
		t.Fatalf("refusals[auth] = %d, want 6", got)
	}
}

// A valid token reads its own private channels, public ones and those it lists; a
// refused channel (another user's private channel) fails alone and the connection goes on.
func TestStreamChannelPermissions(t *testing.T) {
	keys := testKeys(t, "k1:"+secretA, time.Now())
	keys.Now = nil
	s := startServer(t, &Authenticator{Keys: keys})
	ctx := testutil.Context(t)
	tok, _ := keys.Mint("42", time.Hour, []string{"orders.*"})
	c, err := rtclient.Dial(ctx, s.url, &rtclient.DialOptions{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Subscribe(ctx, "s1", []string{"user:42:inbox", "user:43:inbox", "orders.eu", "billing", "public:lobby"}, nil); err != nil {
		t.Fatal(err)
	}
	got := results(next(t, ctx, c, protocol.TypeSubscribed))
	want := map[string]string{"user:42:inbox": "ok", "user:43:inbox": "forbidden", "orders.eu": "ok", "billing": "forbidden", "public:lobby": "ok"}
	for ch, w := range want {
		if got[ch] != w {
			t.Errorf("%s: %s, want %s", ch, got[ch], w)
		}
	}
	s.publish(t, "user:43:inbox", "secret-1")
	s.publish(t, "user:42:inbox", "mine-1")
	f := next(t, ctx, c, protocol.TypeEvents)
	if len(f.Events) != 1 || f.Events[0].ID != "mine-1" {
		t.Fatalf("events %+v, want only mine-1", f.Events)
	}
}

// Dev mode without keys: anonymous connections read public channels only.
func TestStreamDevModeAnonymous(t *testing.T) {
	s := startServer(t, &Authenticator{AllowAnonymous: true})
	ctx := testutil.Context(t)
	c, err := rtclient.Dial(ctx, s.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Subscribe(ctx, "s1", []string{"public:lobby", "user:1:inbox", "orders"}, nil); err != nil {
		t.Fatal(err)
	}
	got := results(next(t, ctx, c, protocol.TypeSubscribed))
	if got["public:lobby"] != "ok" || got["user:1:inbox"] != "forbidden" || got["orders"] != "forbidden" {
		t.Fatalf("results %v", got)
	}
	// A token is still verified: without keys none is valid.
	_, err = rtclient.Dial(ctx, s.url, &rtclient.DialOptions{Token: "x.y.z"})
	if rtclient.CloseCode(err) != protocol.CloseUnauthorize {
		t.Fatalf("token in dev mode without keys: %v", err)
	}
}

// A connection whose token expires is closed with 4200; one that sent a fresh token for
// the same user in time stays; a token for another user or a bad one is refused with an
// error frame and changes nothing; channels the new token no longer allows are dropped.
// Only the two dials and the refresh must happen before the short token expires; the
// other checks come after it, so that a slow machine has the token's whole lifetime
// for those three steps.
func TestStreamTokenExpiryAndRefresh(t *testing.T) {
	keys := testKeys(t, "k1:"+secretA, time.Now())
	keys.Now = nil
	keys.Leeway = time.Millisecond
	s := startServer(t, &Authenticator{Keys: keys})
	ctx := testutil.Context(t)
	short, _ := keys.Mint("42", 3*time.Second, []string{"orders"})
	stay, err := rtclient.Dial(ctx, s.url, &rtclient.DialOptions{Token: short, Channels: []string{"orders", "user:42:a"}})
	if err != nil {
		t.Fatal(err)
	}
	defer stay.CloseNow()
	gone, err := rtclient.Dial(ctx, s.url, &rtclient.DialOptions{Token: short})
	if err != nil {
		t.Fatal(err)
	}
	defer gone.CloseNow()
	next(t, ctx, stay, protocol.TypeSubscribed)
	fresh, _ := keys.Mint("42", time.Hour, nil) // no longer lists "orders"
	if err := stay.Send(ctx, &protocol.ClientFrame{Type: protocol.TypeAuth, ID: "a3", Token: fresh}); err != nil {
		t.Fatal(err)
	}
	f := next(t, ctx, stay, protocol.TypeSubscribed)
	if f.Op != protocol.TypeUnsubscribe || len(f.Results) != 1 || f.Results[0].Channel != "orders" || f.Results[0].Code != protocol.CodeForbidden {
		t.Fatalf("re-check after refresh: %+v", f)
	}
	if f := next(t, ctx, stay, protocol.TypeAuth); f.ID != "a3" {
		t.Fatalf("auth answer %+v", f)
	}

	other, _ := keys.Mint("43", time.Hour, nil)
	if err := stay.Send(ctx, &protocol.ClientFrame{Type: protocol.TypeAuth, ID: "a1", Token: other}); err != nil {
		t.Fatal(err)
	}
	if f := next(t, ctx, stay, protocol.TypeError); f.Code != protocol.CodeForbidden || f.ID != "a1" {
		t.Fatalf("other user's token: %+v", f)
	}
	if err := stay.Send(ctx, &protocol.ClientFrame{Type: protocol.TypeAuth, ID: "a2", Token: "garbage"}); err != nil {
		t.Fatal(err)
	}
	if f := next(t, ctx, stay, protocol.TypeError); f.Code != protocol.CodeBadToken {
		t.Fatalf("bad token: %+v", f)
	}

	start := time.Now()
	_, err = gone.ReadFrame(ctx)
	if rtclient.CloseCode(err) != protocol.CloseTokenExpire {
		t.Fatalf("expired connection: %v", err)
	}
	t.Logf("closed 4200 %v after the check started", time.Since(start).Round(time.Millisecond))
	// The refreshed one outlives the first token and still gets its events.
	time.Sleep(300 * time.Millisecond)
	s.publish(t, "user:42:a", "after-expiry")
	if f := next(t, ctx, stay, protocol.TypeEvents); f.Events[0].ID != "after-expiry" {
		t.Fatalf("events %+v", f.Events)
	}
	snap := s.eng.Snapshot()
	if snap.Disconnects["token_expired"] != 1 {
		t.Fatalf("disconnects %v", snap.Disconnects)
	}
}

// The reconnecting Go client reads refusal close codes on connect: an invalid token
// (4401) stops it instead of retrying forever.
func TestClientStopsOnRefusedToken(t *testing.T) {
	keys := testKeys(t, "k1:"+secretA, time.Now())
	keys.Now = nil
	s := startServer(t, &Authenticator{Keys: keys})
	ctx := testutil.Context(t)
	c := rtclient.Start(ctx, rtclient.Config{URL: s.url, Token: "forged.token.x", Logger: testutil.Discard()})
	defer c.Close()
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("client still retrying a refused token")
	}
	if !errors.Is(c.Err(), rtclient.ErrStopped) || c.Stats().LastClose != protocol.CloseUnauthorize {
		t.Fatalf("err %v, last close %d", c.Err(), c.Stats().LastClose)
	}
}
