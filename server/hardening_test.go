package server

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"encore.app/internal/testutil"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// No shared default secret outside dev mode: a server with any key needs every key,
// never accepts the documented dev keys as its own, and dev mode stays on loopback.
func TestKeysAllOrNone(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // "" = valid
	}{
		{"dev mode", nil, ""},
		{"keyed", keyed, ""},
		{"token keys only", []string{"-token-keys", testKeys}, "missing -publisher-key ($REALTIME_PUBLISHER_KEY) and -admin-key ($REALTIME_ADMIN_KEY)"},
		{"README's keys without an admin key", []string{"-token-keys", testKeys, "-publisher-key", testPublisherKey}, "missing -admin-key ($REALTIME_ADMIN_KEY)"},
		{"publisher key only", []string{"-publisher-key", testPublisherKey}, "missing -token-keys"},
		{"keyed with the dev admin key", []string{"-token-keys", testKeys, "-publisher-key", testPublisherKey, "-admin-key", DevAdminKey}, "-admin-key ($REALTIME_ADMIN_KEY): is the documented dev key"},
		{"keyed with the dev publisher key", []string{"-token-keys", testKeys, "-publisher-key", DevPublisherKey, "-admin-key", testKeyedAdminKey}, "-publisher-key ($REALTIME_PUBLISHER_KEY): is the documented dev key"},
		{"dev mode on every interface", []string{"-addr", "0.0.0.0:4000"}, "-addr ($REALTIME_ADDR): \"0.0.0.0:4000\" is not a loopback address"},
		{"dev mode on :4000", []string{"-addr", ":4000"}, "-addr ($REALTIME_ADDR)"},
		{"dev mode on localhost", []string{"-addr", "localhost:4000"}, ""},
		{"dev mode on ::1", []string{"-addr", "[::1]:4000"}, ""},
		{"dev mode NATS on every interface", []string{"-nats-listen", "0.0.0.0:4222"}, "-nats-listen ($REALTIME_NATS_LISTEN)"},
		{"keyed on every interface", append([]string{"-addr", "0.0.0.0:4000", "-nats-listen", "127.0.0.1:4222"}, keyed...), ""},
		{"keyed NATS on every interface without auth", append([]string{"-nats-listen", "0.0.0.0:4222"}, keyed...), "-nats-listen ($REALTIME_NATS_LISTEN): \"0.0.0.0:4222\" is not a loopback address, and the embedded NATS has no authentication"},
		{"keyed NATS on every interface with a token", append([]string{"-nats-listen", "0.0.0.0:4222", "-nats-token", "s3cret"}, keyed...), ""},
		{"keyed NATS on every interface with a password", append([]string{"-nats-listen", "0.0.0.0:4222", "-nats-user", "rt", "-nats-password", "pw"}, keyed...), ""},
		{"NATS listener with a credentials file", []string{"-nats-listen", "127.0.0.1:4222", "-nats-creds", "/etc/rt.creds"}, "the embedded server's listener takes -nats-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseArgs(t, nil, tc.args...)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	// The same rule for the Encore app in local development; deployed, empty keys turn
	// features off (no dev key), so a partial set is allowed there.
	for _, hosted := range []bool{false, true} {
		o := Defaults()
		o.Env = Environment{Shell: Encore, Hosted: hosted}
		o.TokenKeys, o.SingleInstance = testKeys, true
		err := o.Validate()
		if hosted != (err == nil) || (err != nil && !strings.Contains(err.Error(), "the secret PublisherKey and the secret FlagsAdminKey")) {
			t.Fatalf("encore hosted=%v with TokenKeys only: %v", hosted, err)
		}
	}
}

// A keyed server refuses the dev keys at run time too: the flags admin API and the
// publish endpoint answer 401 to them, and the flag stays as it was.
func TestKeyedServerRefusesDevKeys(t *testing.T) {
	_, hs, _ := startSecured(t, keyed...)
	req, _ := http.NewRequest(http.MethodPut, hs.URL+"/v2/flags/admin/realtime-streaming-v2", strings.NewReader(`{"enabled":false,"reason":"attack"}`))
	req.Header.Set("Authorization", "Bearer "+DevAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dev admin key on a keyed server: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodPost, hs.URL+"/v2/realtime/publish", strings.NewReader(`{"channel":"public.x"}`))
	req.Header.Set("Authorization", "Bearer "+DevPublisherKey)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("dev publisher key on a keyed server: %d", resp.StatusCode)
	}
	tok := mint(t, "1")
	req, _ = http.NewRequest(http.MethodGet, hs.URL+"/v2/flags?token="+tok, nil)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"realtime-streaming-v2":true`) {
		t.Fatalf("the flag moved: %s", b)
	}
}

// In dev mode a request for a foreign Host (a DNS-rebinding page that reaches the
// loopback server under its own name) is refused; loopback names and the allowed
// origins' hosts are served. A keyed server does not check Host.
func TestDevModeHostCheck(t *testing.T) {
	_, dev, _ := startSecured(t, "-origins", "dev.example.test:*")
	_, key, _ := startSecured(t, keyed...)
	for _, tc := range []struct {
		base, host string
		want       int
	}{
		{dev.URL, "", http.StatusOK},
		{dev.URL, "localhost:4000", http.StatusOK},
		{dev.URL, "dev.example.test:4000", http.StatusOK},
		{dev.URL, "rebind.evil.net:4000", http.StatusMisdirectedRequest},
		{key.URL, "rebind.evil.net:4000", http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, tc.base+"/v2/realtime/metrics", nil)
		if tc.host != "" {
			req.Host = tc.host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s Host %q: %d, want %d", tc.base, tc.host, resp.StatusCode, tc.want)
		}
	}
}

// Long-poll and the flags read API follow the stream's origin policy: a foreign origin
// is refused (no CORS headers, so the page cannot read the victim's events even where
// the browser sent the cookie), an allowed one gets CORS headers, and both answer
// their preflight.
func TestPollAndFlagsCORS(t *testing.T) {
	_, hs, _ := startSecured(t, append([]string{"-origins", "app.example.test"}, keyed...)...)
	tok := mint(t, "7")
	get := func(path, origin string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, hs.URL+path, nil)
		req.Header.Set("Origin", origin)
		req.AddCookie(&http.Cookie{Name: "rt_token", Value: tok}) // the victim's cookie
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, path := range []string{"/v2/realtime/poll?channels=user:7:inbox&timeout=0", "/v2/flags"} {
		if r := get(path, "https://evil.example.net"); r.StatusCode != http.StatusForbidden || r.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s from a foreign origin: %d %v", path, r.StatusCode, r.Header)
		}
		r := get(path, "https://app.example.test")
		if r.StatusCode != http.StatusOK || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example.test" ||
			r.Header.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(strings.Join(r.Header.Values("Vary"), ","), "Origin") {
			t.Errorf("%s from an allowed origin: %d %v", path, r.StatusCode, r.Header)
		}
		req, _ := http.NewRequest(http.MethodOptions, hs.URL+strings.Split(path, "?")[0], nil)
		req.Header.Set("Origin", "https://app.example.test")
		req.Header.Set("Access-Control-Request-Method", "GET")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.test" {
			t.Errorf("%s preflight: %d %v", path, resp.StatusCode, resp.Header)
		}
	}
	// The admin API: a foreign page is refused even with the right key.
	req, _ := http.NewRequest(http.MethodGet, hs.URL+"/v2/flags/admin", nil)
	req.Header.Set("Origin", "https://evil.example.net")
	req.Header.Set("Authorization", "Bearer "+testKeyedAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("admin from a foreign origin: %d", resp.StatusCode)
	}
}

// Issue 17: the origin check runs before any budget is charged. Cross-site handshakes
// carrying a user's cookie are refused 403 and leave that user's connect budget (and
// the address's) as it was: the user's own connections then use all of it.
func TestRefusedOriginSpendsNoBudget(t *testing.T) {
	_, _, url := startSecured(t, append(keyed, "-connect-rate", "0.001", "-connect-burst", "3",
		"-ip-connect-rate", "0.001", "-ip-connect-burst", "3")...)
	ctx := testutil.Context(t)
	cookie := http.Header{"Cookie": {"rt_token=" + mint(t, "victim")}}
	for i := range 15 {
		h := cookie.Clone()
		h.Set("Origin", "https://evil.example.net")
		_, err := rtclient.Dial(ctx, url, &rtclient.DialOptions{Header: h})
		var he *rtclient.HTTPError
		if !errors.As(err, &he) || he.Status != http.StatusForbidden {
			t.Fatalf("cross-site attempt %d: %v", i, err)
		}
	}
	for i := range 3 { // the whole burst is still there
		c, err := rtclient.Dial(ctx, url, &rtclient.DialOptions{Header: cookie})
		if err != nil {
			t.Fatalf("the user's own connection %d: %v", i, err)
		}
		c.CloseNow()
	}
	_, err := rtclient.Dial(ctx, url, &rtclient.DialOptions{Header: cookie})
	if rtclient.CloseCode(err) != protocol.CloseRateLimited { // and the budget is real
		t.Fatalf("past the burst: %v", err)
	}
}
