package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, srv *httptest.Server, method, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}

func TestDemoHandler(t *testing.T) {
	srv := httptest.NewServer(DemoHandler())
	defer srv.Close()

	tests := []struct {
		method, path string
		status       int
		ctype        string
		contains     string
	}{
		{"GET", "/", 200, "text/html", `data-testid="health"`},
		{"GET", "/index.html", 301, "", ""}, // FileServer redirects to "/"
		{"GET", "/demo.js", 200, "javascript", "RealtimeClient"},
		{"GET", "/demo.css", 200, "text/css", ".badge"},
		{"HEAD", "/", 200, "text/html", ""},
		{"GET", "/missing.js", 404, "", ""},
		{"POST", "/", 405, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			srv.Client().CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			res, body := get(t, srv, tt.method, tt.path)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
			if tt.ctype != "" && !strings.Contains(res.Header.Get("Content-Type"), tt.ctype) {
				t.Errorf("Content-Type %q, want %q", res.Header.Get("Content-Type"), tt.ctype)
			}
			if !strings.Contains(body, tt.contains) {
				t.Errorf("body does not contain %q", tt.contains)
			}
			if res.StatusCode == 200 && res.Header.Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("missing nosniff")
			}
		})
	}
}

// TestDemoReferencesExist guards against a page that references a missing asset.
func TestDemoReferencesExist(t *testing.T) {
	for _, name := range []string{"demo/index.html", "demo/demo.js", "demo/demo.css"} {
		if _, err := demoFiles.ReadFile(name); err != nil {
			t.Errorf("embedded %s: %v", name, err)
		}
	}
}
