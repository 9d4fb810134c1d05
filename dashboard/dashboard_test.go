//go:build encore

package dashboard

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"

	"encore.app/flags"
	"encore.app/internal/testutil"
	"encore.app/monitoring"
	"encore.app/realtime"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
	"encore.app/server"
)

// These tests run under `encore test` only (build tag encore). Requests name a loopback
// host: dev mode answers no other (DNS rebinding guard).

func page(t *testing.T) *goquery.Document {
	t.Helper()
	w := httptest.NewRecorder()
	Page(w, httptest.NewRequest(http.MethodGet, "http://127.0.0.1/dashboard", nil))
	if w.Code != 200 {
		t.Fatalf("dashboard: %d %s", w.Code, w.Body)
	}
	doc, err := goquery.NewDocumentFromReader(w.Body)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

func setStreaming(t *testing.T, on bool) {
	t.Helper()
	body := `{"enabled":false,"reason":"dashboard test"}`
	if on {
		body = `{"enabled":true,"reason":"dashboard test"}`
	}
	req := httptest.NewRequest(http.MethodPut, "http://127.0.0.1/v2/flags/admin/realtime-streaming-v2", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+server.DevAdminKey)
	w := httptest.NewRecorder()
	flags.ChangeFlag(w, req)
	if w.Code != 200 {
		t.Fatalf("flag change: %d %s", w.Code, w.Body)
	}
}

// The dashboard's source: the streaming flag's state as the flags service has it, and
// the delivery latency a browser reported over its stream (through the fleet record and
// the monitoring aggregate).
func TestDashboardShowsFlagAndBrowserLatency(t *testing.T) {
	flagState := func() string { return page(t).Find(`[data-testid="flag-state"]`).Text() }
	testutil.WaitFor(t, "flag on", func() bool { return flagState() == "on" })
	setStreaming(t, false)
	t.Cleanup(func() { setStreaming(t, true) })
	testutil.WaitFor(t, "flag off on the page", func() bool { return flagState() == "off" })
	setStreaming(t, true)
	testutil.WaitFor(t, "flag on again", func() bool { return flagState() == "on" })

	// A client on the app's stream sends a health frame, as the TypeScript client does.
	hs := httptest.NewServer(http.HandlerFunc(realtime.Serve))
	defer hs.Close()
	ctx := testutil.Context(t)
	c, err := rtclient.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/v2/realtime/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	report := &protocol.HealthReport{RTTMillis: 12, LatencyP50Millis: 42, LatencyP99Millis: 97, Transport: "ws"}
	if err := c.Send(ctx, &protocol.ClientFrame{Type: protocol.TypeHealth, Health: report}); err != nil {
		t.Fatal(err)
	}
	for {
		ov, err := monitoring.Overview(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ov.Overview.DeliveryP50.Count > 0 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the browser's report never reached the fleet overview")
		case <-time.After(200 * time.Millisecond):
		}
	}
	got := page(t).Find(`[data-testid="card-latency-p50-value"]`).Text()
	if !strings.HasPrefix(got, "42") {
		t.Fatalf("delivery p50 card %q, want the reported 42 ms", got)
	}
}

// The console's sign-in route opens the admin panels: the connection inspector asks the
// fleet (this app's one instance) and finds the anonymous stream connection.
func TestConsoleSignInAndInspect(t *testing.T) {
	form := url.Values{"key": {server.DevAdminKey}}
	req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1/dashboard/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	w := httptest.NewRecorder()
	Login(w, req)
	cookies := w.Result().Cookies()
	if w.Code != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("login: %d, %d cookies", w.Code, len(cookies))
	}
	hs := httptest.NewServer(http.HandlerFunc(realtime.Serve))
	defer hs.Close()
	ctx := testutil.Context(t)
	c, err := rtclient.Dial(ctx, "ws"+strings.TrimPrefix(hs.URL, "http")+"/v2/realtime/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/dashboard?user="+c.Welcome.Session, nil)
	r.AddCookie(cookies[0])
	pw := httptest.NewRecorder()
	Page(pw, r)
	doc, err := goquery.NewDocumentFromReader(pw.Body)
	if err != nil {
		t.Fatal(err)
	}
	if n := doc.Find(`[data-testid="inspect-row"]`).Length(); pw.Code != 200 || n != 1 {
		t.Fatalf("inspector: status %d, %d rows: %s", pw.Code, n, doc.Find(`[data-testid="inspector"]`).Text())
	}
}
