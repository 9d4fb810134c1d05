package server

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/auth"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

const (
	testKeys          = "k1:0123456789abcdef0123456789abcdef-test"
	testPublisherKey  = "test-publisher-key-0123456789"
	testKeyedAdminKey = "test-admin-key-0123456789abcdef"
)

// keyed are the flags of a keyed server: every key set.
var keyed = []string{"-token-keys", testKeys, "-publisher-key", testPublisherKey, "-admin-key", testKeyedAdminKey}

// startSecured builds a server from flags (as realtimed would) on a loopback httptest
// server.
func startSecured(t *testing.T, args ...string) (*Server, *httptest.Server, string) {
	t.Helper()
	o, err := parseArgs(t, nil, append([]string{"-data", t.TempDir()}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	o.Env.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := testutil.Context(t)
	s, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(func() { hs.Close(); s.Close() })
	return s, hs, "ws" + strings.TrimPrefix(hs.URL, "http") + "/v2/realtime/stream"
}

func mint(t *testing.T, user string, channels ...string) string {
	t.Helper()
	k, err := auth.ParseKeys(testKeys)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := k.Mint(user, 10*time.Minute, channels)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// -origins: browsers from other origins are refused (403) before anything else.
func TestOriginsFlag(t *testing.T) {
	_, _, url := startSecured(t, append([]string{"-origins", "app.example.com"}, keyed...)...)
	ctx := testutil.Context(t)
	tok := mint(t, "1")
	_, err := rtclient.Dial(ctx, url, &rtclient.DialOptions{Token: tok, Header: http.Header{"Origin": {"https://evil.example.net"}}})
	var he *rtclient.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusForbidden {
		t.Fatalf("foreign origin: %v", err)
	}
	c, err := rtclient.Dial(ctx, url, &rtclient.DialOptions{Token: tok, Header: http.Header{"Origin": {"https://app.example.com"}}})
	if err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
	c.CloseNow()
}

// With keys: tokens are required, verified, and the token command's tokens work; the
// flags reach the engine (frame size, channel length, message rate) and the breaker
// state is in the metrics.
func TestTokenKeysAndLimitFlags(t *testing.T) {
	s, hs, url := startSecured(t, append(keyed, "-max-frame-bytes", "2048", "-max-channel-length", "32",
		"-public-prefixes", "news.", "-max-conns-per-user", "2")...)
	ctx := testutil.Context(t)
	if _, err := rtclient.Dial(ctx, url, nil); rtclient.CloseCode(err) != protocol.CloseUnauthorize {
		t.Fatalf("no token: %v", err)
	}
	tok := mint(t, "42", "orders.*")
	c, err := rtclient.Dial(ctx, url, &rtclient.DialOptions{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if l := c.Welcome.Limits; l.MaxFrameBytes != 2048 || l.MaxChannelLength != 32 {
		t.Fatalf("limits %+v", l)
	}
	if err := c.Subscribe(ctx, "s", []string{"orders.eu", "news.x", "public:x", "user:42:a", "user:7:a"}, nil); err != nil {
		t.Fatal(err)
	}
	f, err := c.ReadFrame(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"orders.eu": true, "news.x": true, "public:x": false, "user:42:a": true, "user:7:a": false}
	for _, r := range f.Results {
		if r.OK != want[r.Channel] {
			t.Errorf("%s: %+v", r.Channel, r)
		}
	}
	c2, err := rtclient.Dial(ctx, url, &rtclient.DialOptions{Token: tok})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.CloseNow()
	if _, err := rtclient.Dial(ctx, url, &rtclient.DialOptions{Token: tok}); rtclient.CloseCode(err) != protocol.CloseTooMany {
		t.Fatalf("3rd connection with -max-conns-per-user 2: %v", err)
	}
	resp, err := http.Get(hs.URL + "/v2/realtime/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var m struct{ Breaker string }
	_ = json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if m.Breaker != "closed" {
		t.Fatalf("metrics breaker %q", m.Breaker)
	}
	resp, err = http.Get(hs.URL + "/v2/realtime/dev/token?user=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("dev token endpoint without -dev-mint: %d", resp.StatusCode)
	}
	if got := s.eng.Snapshot().Refusals["too_many_connections"]; got != 1 {
		t.Fatalf("refusals %d", got)
	}
}

// Without keys: dev mode serves anonymous connections public channels only; -dev-mint
// lets loopback clients mint tokens (throwaway key) to try private channels.
func TestDevModeAndDevMint(t *testing.T) {
	_, hs, url := startSecured(t, "-dev-mint")
	ctx := testutil.Context(t)
	c, err := rtclient.Dial(ctx, url, &rtclient.DialOptions{Channels: []string{"public:lobby", "user:42:inbox"}})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := c.ReadFrame(ctx)
	c.CloseNow()
	if len(f.Results) != 2 || !f.Results[0].OK || f.Results[1].Code != protocol.CodeForbidden {
		t.Fatalf("anonymous: %+v", f.Results)
	}
	resp, err := http.Get(hs.URL + "/v2/realtime/dev/token?user=42&ttl=5m")
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || body.Token == "" {
		t.Fatalf("dev token: %d", resp.StatusCode)
	}
	c, err = rtclient.Dial(ctx, url, &rtclient.DialOptions{Token: body.Token, Channels: []string{"user:42:inbox"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if f, _ := c.ReadFrame(ctx); len(f.Results) != 1 || !f.Results[0].OK {
		t.Fatalf("minted token: %+v", f)
	}
}

// Environment variables set the security settings.
func TestSecurityFlagsFromEnv(t *testing.T) {
	o, err := parseArgs(t, map[string]string{"REALTIME_MAX_CONNS_PER_USER": "3", "REALTIME_CONNECT_RATE": "0.5",
		"REALTIME_TOKEN_KEYS": testKeys, "REALTIME_PUBLISHER_KEY": testPublisherKey, "REALTIME_ADMIN_KEY": testKeyedAdminKey})
	if err != nil {
		t.Fatal(err)
	}
	if o.MaxConnsPerUser != 3 || o.ConnectRate != 0.5 || o.TokenKeys != testKeys || o.DevMint {
		t.Fatalf("options %+v", o)
	}
}
