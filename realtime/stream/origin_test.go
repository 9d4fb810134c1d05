package stream

import (
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
	if n := authCalls.Load(); n != 0 {
		t.Fatalf("Authenticate ran %d times for refused origins", n)
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
