package origin

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func req(method, host, origin string) *http.Request {
	r := httptest.NewRequest(method, "http://"+host+"/v2/realtime/poll", nil)
	r.Host = host
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	return r
}

func TestCheck(t *testing.T) {
	p, err := New([]string{"app.example.com", "*.example.org", "localhost:*", "https://secure.example.net"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host, origin string
		ok           bool
	}{
		{"rt.example.com", "", true},                                  // not a browser
		{"rt.example.com", "https://rt.example.com", true},            // same host
		{"rt.example.com", "https://RT.example.com", true},            // case
		{"rt.example.com", "https://app.example.com", true},           // pattern
		{"rt.example.com", "https://a.b.example.org", true},           // glob
		{"rt.example.com", "http://localhost:5173", true},             // port glob
		{"rt.example.com", "https://secure.example.net", true},        // scheme pattern
		{"rt.example.com", "http://secure.example.net", false},        // wrong scheme
		{"rt.example.com", "https://evil.example.net", false},         // foreign
		{"rt.example.com", "https://app.example.com.evil.net", false}, // suffix trick
		{"rt.example.com", "null", false},                             // sandboxed page
		{"rt.example.com", "https://rt.example.com:8443", false},      // another port is another origin
		{"127.0.0.1:4000", "http://127.0.0.1:4001", false},            // another loopback port
	} {
		err := p.Check(req("GET", tc.host, tc.origin))
		if (err == nil) != tc.ok {
			t.Errorf("host %s origin %q: %v, want ok=%v", tc.host, tc.origin, err, tc.ok)
		}
	}
	if _, err := New([]string{"[bad"}, nil); err == nil {
		t.Fatal("bad pattern accepted")
	}
}

func TestAllowCORSAndPreflight(t *testing.T) {
	var logs bytes.Buffer
	p, _ := New([]string{"127.0.0.1:5173"}, slog.New(slog.NewTextHandler(&logs, nil)))

	w := httptest.NewRecorder()
	if !p.Allow(w, req("GET", "127.0.0.1:4000", "http://127.0.0.1:5173"), true) {
		t.Fatal("allowed origin refused")
	}
	h := w.Header()
	if h.Get("Access-Control-Allow-Origin") != "http://127.0.0.1:5173" || h.Get("Access-Control-Allow-Credentials") != "true" ||
		h.Get("Vary") != "Origin" || !strings.Contains(h.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Fatalf("CORS headers: %v", h)
	}

	w = httptest.NewRecorder()
	if !p.Allow(w, req("GET", "127.0.0.1:4000", "http://127.0.0.1:4000"), true) || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("same origin: %v", w.Header())
	}

	for range 20 {
		w = httptest.NewRecorder()
		if p.Allow(w, req("GET", "127.0.0.1:4000", "https://evil.example"), true) {
			t.Fatal("foreign origin allowed")
		}
		if w.Code != http.StatusForbidden || w.Header().Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("refusal: %d %v", w.Code, w.Header())
		}
	}
	if p.Refused() != 20 {
		t.Fatalf("refused %d", p.Refused())
	}
	if n := strings.Count(logs.String(), "refused a cross-origin request"); n < 1 || n > 10 {
		t.Fatalf("%d log lines for 20 refusals (bounded rate wanted): %s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "origin=https://evil.example") {
		t.Fatalf("the log names no origin: %s", logs.String())
	}

	pre := req("OPTIONS", "127.0.0.1:4000", "http://127.0.0.1:5173")
	pre.Header.Set("Access-Control-Request-Method", "GET")
	pre.Header.Set("Access-Control-Request-Headers", "authorization")
	w = httptest.NewRecorder()
	p.Preflight(w, pre)
	if w.Code != http.StatusNoContent || w.Header().Get("Access-Control-Allow-Origin") != "http://127.0.0.1:5173" ||
		!strings.Contains(w.Header().Get("Access-Control-Allow-Methods"), "GET") || w.Header().Get("Access-Control-Allow-Headers") != "authorization" {
		t.Fatalf("preflight: %d %v", w.Code, w.Header())
	}
	pre.Header.Set("Origin", "https://evil.example")
	w = httptest.NewRecorder()
	p.Preflight(w, pre)
	if w.Code != http.StatusForbidden || w.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign preflight: %d %v", w.Code, w.Header())
	}
}

func TestAllowsHost(t *testing.T) {
	p, _ := New([]string{"dev.example.test:*"}, nil)
	for host, ok := range map[string]bool{
		"127.0.0.1:4000":        true,
		"127.1.2.3":             true,
		"[::1]:4000":            true,
		"localhost:4000":        true,
		"LOCALHOST":             true,
		"app.localhost:4000":    true,
		"dev.example.test:4000": true,  // an allowed origin's host
		"rebind.evil.net:4000":  false, // DNS rebinding: a foreign name for 127.0.0.1
		"10.0.0.1:4000":         false,
		"":                      false,
	} {
		if got := p.AllowsHost(host); got != ok {
			t.Errorf("AllowsHost(%q) = %v, want %v", host, got, ok)
		}
	}
}

func FuzzCheck(f *testing.F) {
	p, _ := New([]string{"*.example.com", "https://x.test"}, slog.New(slog.DiscardHandler))
	for _, o := range []string{"", "null", "https://a.example.com", "http://[::1]:80", "%zz", "https://x.test"} {
		f.Add("rt.example.com", o)
	}
	f.Fuzz(func(t *testing.T, host, o string) {
		r := httptest.NewRequest("GET", "http://h/", nil)
		r.Host = host
		r.Header.Set("Origin", o)
		_ = p.Check(r)
		_ = p.AllowsHost(host)
	})
}
