package web

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"encore.app/monitoring/health"
	"encore.app/monitoring/inspect"
	"encore.app/realtime/protocol"
)

const testKey = "an-admin-key-of-16+bytes"

// fakeAdmin records publishes and answers lookups.
type fakeAdmin struct {
	mu        sync.Mutex
	published []*protocol.Event
	asked     []string
}

func (f *fakeAdmin) Channels(context.Context, int) (health.ChannelsView, error) {
	return health.ChannelsView{Reporting: 1, Rows: []health.ChannelRow{{Channel: "orders", Subscribers: 5, Instances: 1, Exact: true}}}, nil
}

func (f *fakeAdmin) Connections(_ context.Context, q inspect.Query) (inspect.Result, error) {
	f.mu.Lock()
	f.asked = append(f.asked, q.Match)
	f.mu.Unlock()
	if err := q.Normalize(); err != nil {
		return inspect.Result{}, err
	}
	return inspect.Result{Expected: 1, FleetWide: true, Answers: []inspect.Answer{{Instance: "host-a", Matched: 0}}}, nil
}

func (f *fakeAdmin) Publish(_ context.Context, ev *protocol.Event) (uint64, error) {
	if ev.Channel == "bad channel" {
		return 0, errors.Join(ErrInvalidEvent, errors.New("channel name has a space"))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.published = append(f.published, ev)
	return uint64(len(f.published)), nil
}

func adminServer(t *testing.T) (*httptest.Server, *fakeAdmin, *Handler) {
	t.Helper()
	f, src := newFleet(t)
	f.step(t, 3)
	fa := &fakeAdmin{}
	h := New(src, Options{AdminKey: testKey, Admin: fa, Interval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	mux := http.NewServeMux()
	mux.Handle("/dashboard", h)
	mux.Handle("/dashboard/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(h.Close)
	return srv, fa, h
}

// browserClient keeps cookies and does not follow redirects.
func browserClient(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func doc(t *testing.T, resp *http.Response) *goquery.Document {
	t.Helper()
	defer resp.Body.Close()
	d, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func postForm(t *testing.T, c *http.Client, u string, v url.Values, header map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, val := range header {
		req.Header.Set(k, val)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestLoginPublishLogout(t *testing.T) {
	srv, fa, _ := adminServer(t)
	c := browserClient(t)
	page := func(path string) *goquery.Document {
		resp, err := c.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		return doc(t, resp)
	}
	if d := page("/dashboard?user=42"); d.Find(`[data-testid="login-form"]`).Length() != 1 || d.Find(`[data-testid="inspector"]`).Length() != 0 {
		t.Fatal("signed out: no login form, or admin panels shown")
	}
	if len(fa.asked) != 0 {
		t.Fatal("the inspector ran for a signed-out visitor")
	}

	// A wrong key: 401 and the form again; the right one: a session cookie and a redirect.
	resp := postForm(t, c, srv.URL+"/dashboard/login", url.Values{"key": {"wrong"}}, nil)
	if d := doc(t, resp); resp.StatusCode != 401 || d.Find(`[data-testid="login-error"]`).Text() != "Wrong key." {
		t.Fatalf("wrong key: %d", resp.StatusCode)
	}
	resp = postForm(t, c, srv.URL+"/dashboard/login", url.Values{"key": {testKey}, "range": {"1h"}}, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/dashboard?range=1h#tools" {
		t.Fatalf("login: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	ck := resp.Cookies()
	if len(ck) != 1 || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteStrictMode || ck[0].Path != "/dashboard" {
		t.Fatalf("cookie %+v", ck)
	}

	d := page("/dashboard?user=42")
	if d.Find(`[data-testid="channel-row"][data-channel="orders"]`).Length() != 1 || d.Find(`[data-testid="inspect-summary"]`).Text() != "0 connections on 1 instance answering" {
		t.Fatalf("admin page: channels %d, summary %q", d.Find(`[data-testid="channel-row"]`).Length(), d.Find(`[data-testid="inspect-summary"]`).Text())
	}
	csrf := d.Find(`form[data-testid="publish-form"] input[name="csrf"]`).AttrOr("value", "")
	if csrf == "" {
		t.Fatal("no CSRF token in the publish form")
	}

	// Without the token, or from another site, the publish is refused.
	form := url.Values{"channel": {"orders"}, "type": {"test"}, "data": {`{"x":1}`}}
	for name, tc := range map[string]struct {
		csrf   string
		header map[string]string
	}{
		"no token":     {"", nil},
		"wrong token":  {"nope", nil},
		"cross-site":   {csrf, map[string]string{"Sec-Fetch-Site": "cross-site"}},
		"other origin": {csrf, map[string]string{"Origin": "https://evil.example"}},
	} {
		f := url.Values{"csrf": {tc.csrf}}
		for k, v := range form {
			f[k] = v
		}
		resp := postForm(t, c, srv.URL+"/dashboard/publish", f, tc.header)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", name, resp.StatusCode)
		}
	}
	if len(fa.published) != 0 {
		t.Fatal("a refused publish reached the bus")
	}
	form.Set("csrf", csrf)
	resp = postForm(t, c, srv.URL+"/dashboard/publish", form, map[string]string{"Origin": srv.URL, "Sec-Fetch-Site": "same-origin"})
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Location"), "pub=1") {
		t.Fatalf("publish: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if ev := fa.published[0]; ev.Channel != "orders" || ev.Type != "test" || string(ev.Data) != `{"x":1}` || !strings.HasPrefix(ev.ID, "console-") {
		t.Fatalf("published %+v", ev)
	}
	if got := page("/dashboard?pub=1&ch=orders").Find(`[data-testid="publish-result"]`).Text(); got != "Published to orders at sequence 1." {
		t.Fatalf("result %q", got)
	}
	// Bad data and a refused channel: the page again with the reason.
	for data, want := range map[string]string{"{nope": "Data is not JSON."} {
		f := url.Values{"csrf": {csrf}, "channel": {"orders"}, "data": {data}}
		resp := postForm(t, c, srv.URL+"/dashboard/publish", f, nil)
		if d := doc(t, resp); resp.StatusCode != 400 || d.Find(`[data-testid="publish-result"]`).Text() != want {
			t.Errorf("data %q: %d %q", data, resp.StatusCode, d.Find(`[data-testid="publish-result"]`).Text())
		}
	}
	resp = postForm(t, c, srv.URL+"/dashboard/publish", url.Values{"csrf": {csrf}, "channel": {"bad channel"}}, nil)
	if d := doc(t, resp); resp.StatusCode != 400 || !strings.Contains(d.Find(`[data-testid="publish-result"]`).Text(), "space") {
		t.Errorf("refused channel: %d", resp.StatusCode)
	}

	// Sign out: the cookie is cleared and the panels are gone.
	resp = postForm(t, c, srv.URL+"/dashboard/logout", url.Values{"csrf": {csrf}}, nil)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout %d", resp.StatusCode)
	}
	if page("/dashboard").Find(`[data-testid="login-form"]`).Length() != 1 {
		t.Fatal("still signed in after logout")
	}
}

func TestBearerPublishAndLiveChannels(t *testing.T) {
	srv, fa, _ := adminServer(t)
	resp := postForm(t, http.DefaultClient, srv.URL+"/dashboard/publish", url.Values{"channel": {"orders"}},
		map[string]string{"Authorization": "Bearer " + testKey})
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"seq":1`) || len(fa.published) != 1 {
		t.Fatalf("bearer publish: %d %s", resp.StatusCode, body)
	}
	resp = postForm(t, http.DefaultClient, srv.URL+"/dashboard/publish", url.Values{"channel": {"orders"}},
		map[string]string{"Authorization": "Bearer wrong"})
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("wrong bearer: %d", resp.StatusCode)
	}

	// The live stream carries the busiest channels for an admin only.
	for _, tc := range []struct {
		auth string
		want int
	}{{"Bearer " + testKey, 1}, {"", 0}} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/dashboard/events?range=1h", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, data := readEvent(t, bufio.NewReader(resp.Body))
		d, _ := goquery.NewDocumentFromReader(strings.NewReader(data))
		if n := d.Find(`[data-testid="channel-row"]`).Length(); n != tc.want {
			t.Errorf("auth %q: %d channel rows, want %d", tc.auth, n, tc.want)
		}
		if got := d.Find(`[data-testid="chart-latency"] .xaxis span`).First().Text(); got != "1 h ago" {
			t.Errorf("range not applied to the stream: %q", got)
		}
		resp.Body.Close()
		cancel()
	}
}

func TestSessionCookie(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := newKeyAuth(testKey, func() time.Time { return now })
	s := a.newSession()
	if !a.sessionOK(s) {
		t.Fatal("fresh session refused")
	}
	for _, bad := range []string{"", "x", s + "x", strings.Replace(s, ".", "0.", 1), "99999999999.abc." + a.mac("session", "99999999999", "abd")} {
		if a.sessionOK(bad) {
			t.Errorf("accepted %q", bad)
		}
	}
	if other := newKeyAuth("another-key-of-16+bytes", a.now); other.sessionOK(s) {
		t.Error("a session survived a key change")
	}
	now = now.Add(sessionTTL)
	if a.sessionOK(s) {
		t.Error("expired session accepted")
	}
	if off := newKeyAuth("", a.now); off.enabled() || off.keyOK("") {
		t.Error("no key must refuse everything")
	}
}

func TestLoginRateLimited(t *testing.T) {
	srv, _, _ := adminServer(t)
	var last int
	for i := 0; i < loginBurst+2; i++ {
		resp := postForm(t, http.DefaultClient, srv.URL+"/dashboard/login", url.Values{"key": {"guess"}}, nil)
		resp.Body.Close()
		last = resp.StatusCode
	}
	if last != http.StatusTooManyRequests {
		t.Fatalf("after %d failures: %d, want 429", loginBurst+2, last)
	}
}
