//go:build encore

package flags

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"encore.app/server"
)

// These tests run under `encore test` only (build tag encore).

func call(t *testing.T, ep func(http.ResponseWriter, *http.Request), method, path, key, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, "http://127.0.0.1"+path, strings.NewReader(body)) // a loopback Host: dev mode refuses others
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	w := httptest.NewRecorder()
	ep(w, req)
	return w
}

// The flag endpoints: evaluated flags for anyone (dev mode), definitions, changes and
// the audit log for the admin key only.
func TestFlagEndpoints(t *testing.T) {
	w := call(t, UserFlags, "GET", "/v2/flags", "", "")
	var user struct{ Flags map[string]bool }
	if err := json.Unmarshal(w.Body.Bytes(), &user); err != nil || w.Code != 200 || !user.Flags["realtime-streaming-v2"] {
		t.Fatalf("user flags: %d %s", w.Code, w.Body)
	}
	for _, tc := range []struct {
		ep           func(http.ResponseWriter, *http.Request)
		method, path string
	}{{ListFlags, "GET", "/v2/flags/admin"}, {Audit, "GET", "/v2/flags/audit"}, {ChangeFlag, "PUT", "/v2/flags/admin/realtime-streaming-v2"}} {
		if w := call(t, tc.ep, tc.method, tc.path, "wrong-key-wrong-key", `{"enabled":false}`); w.Code != 401 {
			t.Errorf("%s %s with a wrong key: %d", tc.method, tc.path, w.Code)
		}
	}
	w = call(t, ChangeFlag, "PUT", "/v2/flags/admin/realtime-streaming-v2", server.DevAdminKey, `{"rollout":50,"reason":"encore test"}`)
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"rollout":50`) {
		t.Fatalf("change: %d %s", w.Code, w.Body)
	}
	t.Cleanup(func() {
		call(t, ChangeFlag, "PUT", "/v2/flags/admin/realtime-streaming-v2", server.DevAdminKey, `{"rollout":100,"reason":"encore test cleanup"}`)
	})
	w = call(t, ListFlags, "GET", "/v2/flags/admin", server.DevAdminKey, "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"rollout":50`) {
		t.Fatalf("list: %d %s", w.Code, w.Body)
	}
	w = call(t, Audit, "GET", "/v2/flags/audit?limit=5", server.DevAdminKey, "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), "encore test") {
		t.Fatalf("audit: %d %s", w.Code, w.Body)
	}
	if w := call(t, ChangeFlag, "PUT", "/v2/flags/admin/realtime-streaming-v2", server.DevAdminKey, `{"rollout":500}`); w.Code != 400 {
		t.Fatalf("bad rollout: %d %s", w.Code, w.Body)
	}
}
