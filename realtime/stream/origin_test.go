package stream

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/rtclient"
)

// One origin policy for the stream and the poll, checked before anything else: a
// foreign Origin never reaches Authenticate (so no token check and no connect budget);
// an allowed cross-origin poll is answered with CORS headers, refusals included, and
// its preflight is answered.
func TestOriginBeforeAnyWork(t *testing.T) {
	var authCalls atomic.Int64
	env := newEnv(t, Config{
		AcceptOrigins: []string{"app.example.test"},
		Authenticate: func(*http.Request) (*Identity, error) {
			authCalls.Add(1)
			return &Identity{}, nil
		},
	}, bus.Config{})
	ctx := testutil.Context(t)
	foreign := http.Header{"Origin": {"https://evil.example.net"}}
	allowed := http.Header{"Origin": {"https://app.example.test"}}

	for range 5 {
		_, err := rtclient.Dial(ctx, env.url, &rtclient.DialOptions{Header: foreign})
		var he *rtclient.HTTPError
		if !errors.As(err, &he) || he.Status != http.StatusForbidden {
			t.Fatalf("stream from a foreign origin: %v", err)
		}
		r := env.mustPoll(pollQuery("o", nil, "0"), foreign)
		if r.status != http.StatusForbidden || r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("poll from a foreign origin: %d %v", r.status, r.header)
		}
	}
	for _, path := range []string{"/v2/realtime/history?channel=o", "/v2/realtime/presence?channel=o"} {
		if st, h := getWith(t, ctx, env.srv.URL+path, foreign); st != http.StatusForbidden || h.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("%s from a foreign origin: %d %v", path, st, h)
		}
	}
	if n := authCalls.Load(); n != 0 {
		t.Fatalf("Authenticate ran %d times for refused origins", n)
	}
	// History and presence are simple GETs (no preflight): an allowed page reads their
	// answers and their refusals.
	for _, path := range []string{"/v2/realtime/history?channel=o", "/v2/realtime/history?channel=bad+channel!", "/v2/realtime/presence?channel=o"} {
		if _, h := getWith(t, ctx, env.srv.URL+path, allowed); h.Get("Access-Control-Allow-Origin") != "https://app.example.test" ||
			h.Get("Access-Control-Allow-Credentials") != "true" {
			t.Fatalf("%s from an allowed origin: %v", path, h)
		}
	}
	s := env.eng.Snapshot()
	if s.Refusals[RefuseOrigin] != 5 || s.LongPollRefusals[pollRefuseOrigin] != 5 {
		t.Fatalf("refusals %v, poll refusals %v", s.Refusals, s.LongPollRefusals)
	}

	r := env.mustPoll(pollQuery("o", nil, "0"), allowed)
	if r.status != http.StatusOK || r.header.Get("Access-Control-Allow-Origin") != "https://app.example.test" ||
		r.header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Fatalf("poll from an allowed origin: %d %v", r.status, r.header)
	}
	r = env.mustPoll(pollQuery("bad channel!", nil, "0"), allowed) // a refusal the page must be able to read
	if r.status != http.StatusBadRequest || r.header.Get("Access-Control-Allow-Origin") != "https://app.example.test" {
		t.Fatalf("refused poll from an allowed origin: %d %v", r.status, r.header)
	}
	c, err := rtclient.Dial(ctx, env.url, &rtclient.DialOptions{Header: allowed})
	if err != nil {
		t.Fatalf("stream from an allowed origin: %v", err)
	}
	c.CloseNow()

	req, _ := http.NewRequestWithContext(ctx, http.MethodOptions, env.srv.URL+"/v2/realtime/poll", nil)
	req.Header.Set("Origin", "https://app.example.test")
	req.Header.Set("Access-Control-Request-Method", "GET")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "GET") ||
		resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example.test" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

func getWith(t *testing.T, ctx context.Context, u string, h http.Header) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}
