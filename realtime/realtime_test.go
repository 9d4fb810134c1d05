//go:build encore

package realtime

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"encore.dev/beta/errs"
	"encore.dev/et"

	"encore.app/internal/testutil"
	"encore.app/server"
)

// These tests run under `encore test` only (build tag encore): the package needs the
// Encore runtime. They drive the endpoints as Encore calls them, on the process's one
// server.

// The Encore config path (realtime/defaults.cue, config.cue, config.Load, FromEncore)
// gives the standalone defaults; only what the test environment sets differs.
func TestConfigGivesTheStandaloneDefaults(t *testing.T) {
	got, err := options()
	if err != nil {
		t.Fatal(err)
	}
	want := server.Defaults()
	testOnly := map[string]bool{"DataDir": true, "DevMint": true} // a temp dir; config.cue's test block
	for _, s := range server.Settings() {
		if s.CUE == "" || testOnly[s.Field] {
			continue
		}
		if g, w := s.Value(&got), s.Value(&want); g != w {
			t.Errorf("%s: %q under Encore, %q standalone", s.Field, g, w)
		}
	}
	if got.Env.Hosted || got.Env.Shell != server.Encore {
		t.Errorf("environment %+v: want local, Encore", got.Env)
	}
}

// The bus is the app's database under encore test (Bus auto, no NATSURL), in a
// namespace of this test process: the other test processes share the database.
func TestBusIsTheAppDatabase(t *testing.T) {
	s, err := Server()
	if err != nil {
		t.Fatal(err)
	}
	o := s.Options()
	if o.EffectiveBus() != server.BusPostgres || !strings.HasPrefix(o.Env.Namespace, "test-") {
		t.Fatalf("bus %q, namespace %q: want postgres in a test namespace", o.EffectiveBus(), o.Env.Namespace)
	}
	var streams int
	if err := db.QueryRow(context.Background(), `SELECT count(*) FROM realtime_streams WHERE name = $1`,
		"realtime-"+o.Env.Namespace).Scan(&streams); err != nil || streams != 1 {
		t.Fatalf("this process's stream in the database: %d %v", streams, err)
	}
}

func post(t *testing.T, path string, header map[string]string, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1"+path, strings.NewReader(body)) // a loopback Host: dev mode refuses others
	for k, v := range header {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	Publish(w, req)
	return w
}

// Publish takes the key as Bearer or X-Publisher-Key and uses the engine's decoder
// and limits.
func TestPublishEndpoint(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header map[string]string
		body   string
		status int
	}{
		{"bearer", map[string]string{"Authorization": "Bearer " + server.DevPublisherKey}, `{"channel":"public.t","data":{"n":1}}`, 200},
		{"x-publisher-key", map[string]string{"X-Publisher-Key": server.DevPublisherKey}, `{"events":[{"channel":"public.t"},{"channel":"public.u"}]}`, 200},
		{"wrong key", map[string]string{"Authorization": "Bearer nope"}, `{"channel":"public.t"}`, 401},
		{"no key", nil, `{"channel":"public.t"}`, 401},
		{"both forms", map[string]string{"X-Publisher-Key": server.DevPublisherKey}, `{"channel":"a","events":[{"channel":"b"}]}`, 400},
		{"bad channel", map[string]string{"X-Publisher-Key": server.DevPublisherKey}, `{"channel":"has space"}`, 400},
		{"data too large", map[string]string{"X-Publisher-Key": server.DevPublisherKey}, `{"channel":"a","data":"` + strings.Repeat("x", 70000) + `"}`, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := post(t, "/v2/realtime/publish", tc.header, tc.body)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status == 200 {
				var resp struct{ Acks []struct{ Seq uint64 } }
				if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || len(resp.Acks) == 0 || resp.Acks[0].Seq == 0 {
					t.Fatalf("acks %s (%v)", w.Body, err)
				}
			}
		})
	}
}

// The topic's subscription appends a good event once per message ID and drops a bad
// one instead of retrying it forever.
func TestTopicToBus(t *testing.T) {
	ctx := context.Background()
	if _, err := Events.Publish(ctx, &Event{Channel: "public.t", Data: json.RawMessage(`1`)}); err != nil {
		t.Fatal(err)
	}
	if n := len(et.Topic(Events).PublishedMessages()); n != 1 {
		t.Fatalf("%d messages on the topic", n)
	}
	s, err := Server()
	if err != nil {
		t.Fatal(err)
	}
	before := s.Engine().Snapshot().EventsPublished
	if err := appendToBus(ctx, &Event{Channel: "public.t", Data: json.RawMessage(`2`)}); err != nil {
		t.Fatal(err)
	}
	if err := appendToBus(ctx, &Event{Channel: "bad channel"}); err != nil {
		t.Fatalf("a bad event must be dropped, not retried: %v", err)
	}
	if got := s.Engine().Snapshot().EventsPublished - before; got != 1 {
		t.Fatalf("%d events appended, want 1", got)
	}
}

// mintToken asks the dev token endpoint (on under encore test, config.cue).
func mintToken(t *testing.T, user string) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/v2/realtime/dev/token?user="+user+"&channels=orders.*", nil)
	req.RemoteAddr = "127.0.0.1:1234"
	w := httptest.NewRecorder()
	DevToken(w, req)
	var body struct{ Token string }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Token == "" {
		t.Fatalf("dev token: %d %s", w.Code, w.Body)
	}
	return body.Token
}

// The auth handler verifies the stream's tokens for the app's auth endpoints.
func TestAuthHandler(t *testing.T) {
	ctx := context.Background()
	for _, p := range []*AuthParams{{}, {Token: "not-a-token"}, {Cookie: "not-a-token"}} {
		if _, _, err := AuthHandler(ctx, p); errs.Code(err) != errs.Unauthenticated {
			t.Errorf("%+v: %v, want unauthenticated", p, err)
		}
	}
	tok := mintToken(t, "42")
	for _, p := range []*AuthParams{{Token: tok}, {Cookie: tok}} {
		uid, data, err := AuthHandler(ctx, p)
		if err != nil || uid != "42" || len(data.Channels) != 1 || data.Channels[0] != "orders.*" || data.ExpiresAt == 0 {
			t.Errorf("%+v: %q %+v %v", p, uid, data, err)
		}
	}
}

// The server the Encore config builds serves every route of the table that the
// endpoints declare (TestEncoreEndpointsMatchRoutes in package server checks the
// declarations against the same table).
func TestEncoreServerServesEveryRoute(t *testing.T) {
	for _, r := range server.Routes() {
		if r.Only != "" {
			continue
		}
		path := strings.ReplaceAll(r.Path, "{name}", "realtime-streaming-v2")
		if r.Path == "/dashboard/events" {
			continue // an endless event stream; served by the same handler as /dashboard
		}
		req := httptest.NewRequest(r.Method, "http://127.0.0.1"+path, nil)
		req.RemoteAddr = "127.0.0.1:1234"
		w := httptest.NewRecorder()
		Serve(w, req)
		if w.Code == http.StatusNotFound || w.Code == http.StatusMethodNotAllowed || w.Code == http.StatusServiceUnavailable {
			t.Errorf("%s %s: %d %s", r.Method, path, w.Code, strings.TrimSpace(w.Body.String()))
		}
	}
}

func get(t *testing.T, h http.HandlerFunc, path, token string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1"+path, nil)
	req.RemoteAddr = "127.0.0.1:1234"
	if token != "" {
		req.AddCookie(&http.Cookie{Name: "rt_token", Value: token}) // as a page's cookie; ?token= works too
	}
	w := httptest.NewRecorder()
	h(w, req)
	return w
}

// History and presence answer through their Encore endpoints with the stream's token
// (cookie or ?token=) and the channel's read permission: what is published through Publish is in the
// history, in order; a channel outside the token's grant is refused.
func TestHistoryAndPresenceEndpoints(t *testing.T) {
	for i := 1; i <= 3; i++ {
		body := `{"channel":"orders.encore","data":{"n":` + strconv.Itoa(i) + `}}`
		if w := post(t, "/v2/realtime/publish", map[string]string{"X-Publisher-Key": server.DevPublisherKey}, body); w.Code != 200 {
			t.Fatalf("publish: %d %s", w.Code, w.Body)
		}
	}
	tok := mintToken(t, "42")
	var hist struct {
		Events []struct {
			Seq  uint64
			Data struct{ N int }
		}
		More   bool
		Source string
	}
	// The engine appends through the bus; the dispatcher may not have the last event yet.
	testutil.WaitFor(t, "the last event in the history", func() bool {
		w := get(t, History, "/v2/realtime/history?channel=orders.encore&limit=2", tok)
		if w.Code != 200 {
			t.Fatalf("history: %d %s", w.Code, w.Body)
		}
		hist.Events = nil
		if err := json.Unmarshal(w.Body.Bytes(), &hist); err != nil {
			t.Fatal(err)
		}
		return len(hist.Events) == 2 && hist.Events[1].Data.N == 3
	})
	if hist.Events[0].Data.N != 2 || hist.Events[0].Seq >= hist.Events[1].Seq || !hist.More || hist.Source == "" {
		t.Fatalf("history: %+v", hist)
	}
	for _, tc := range []struct {
		h      http.HandlerFunc
		path   string
		token  string
		status int
	}{
		{History, "/v2/realtime/history?channel=orders.encore", "", 403}, // anonymous (dev mode): public channels only
		{History, "/v2/realtime/history?channel=orders.encore", "not-a-token", 401},
		{History, "/v2/realtime/history?channel=secret", tok, 403},
		{History, "/v2/realtime/history?channel=has%20space", tok, 400},
		{Presence, "/v2/realtime/presence?channel=orders.encore", "", 403},
		{Presence, "/v2/realtime/presence?channel=orders.encore&token=not-a-token", "", 401},
		{Presence, "/v2/realtime/presence?channel=secret", tok, 403},
		// 200 on either bus: the app's default, Postgres, keeps presence too.
		{Presence, "/v2/realtime/presence?channel=orders.encore", tok, 200},
	} {
		if w := get(t, tc.h, tc.path, tc.token); w.Code != tc.status {
			t.Errorf("%s with token %v: %d, want %d: %s", tc.path, tc.token != "", w.Code, tc.status, w.Body)
		}
	}
}
