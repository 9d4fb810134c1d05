package flag

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"encore.app/internal/testutil"
)

const testAdminKey = "test-admin-key-0123456789"

// serve starts the handler over a KVStore on a real loopback server. The user is
// taken from the X-User header; "reject" refuses.
func serve(t *testing.T) (*httptest.Server, *KVStore) {
	t.Helper()
	url, _ := startNATS(t, t.TempDir())
	_, js := connect(t, url)
	s := openKV(t, js, Options{})
	api, err := NewAPI(s, []AdminKey{{Name: "ops", Key: testAdminKey}, {Name: "oncall", Key: testAdminKey + "-2"}}, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(api, func(r *http.Request) (string, error) {
		u := r.Header.Get("X-User")
		if u == "reject" {
			return "", errors.New("bad token")
		}
		return u, nil
	})
	srv := httptest.NewServer(h) // listens on 127.0.0.1
	t.Cleanup(srv.Close)
	return srv, s
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, srv *httptest.Server, method, path, auth, body string, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

func decode[T any](t *testing.T, r reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("body %q: %v", r.body, err)
	}
	return v
}

func TestHTTPUserFlags(t *testing.T) {
	srv, _ := serve(t)
	r := do(t, srv, "GET", "/v2/flags", "", "", "X-User", "alice")
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, %s", r.status, r.body)
	}
	if got := decode[UserFlagsResponse](t, r); !got.Flags[StreamingV2] {
		t.Fatalf("flags = %v", got.Flags)
	}
	r = do(t, srv, "GET", "/v2/flags", "", "", "X-User", "reject")
	if e := decode[ErrorResponse](t, r); r.status != 401 || e.Code != CodeUnauthenticated {
		t.Fatalf("rejected user: %d %s", r.status, r.body)
	}
}

func TestHTTPAdminAuth(t *testing.T) {
	srv, s := serve(t)
	for _, auth := range []string{"", "Bearer", "Bearer ", "Basic " + testAdminKey, "Bearer wrong-key-wrong-key-1234", "Bearer " + testAdminKey + "x", testAdminKey} {
		for _, rt := range []struct{ method, path, body string }{
			{"GET", "/v2/flags/admin", ""},
			{"PUT", "/v2/flags/admin/" + StreamingV2, `{"enabled":false}`},
			{"GET", "/v2/flags/audit", ""},
		} {
			r := do(t, srv, rt.method, rt.path, auth, rt.body)
			e := decode[ErrorResponse](t, r)
			if r.status != 401 || e.Code != CodeUnauthenticated || r.header.Get("WWW-Authenticate") == "" {
				t.Fatalf("%s %s with %q: %d %s", rt.method, rt.path, auth, r.status, r.body)
			}
		}
	}
	if !s.Evaluator().Evaluate(StreamingV2, "u1") {
		t.Fatal("a refused request changed the flag")
	}
}

func TestHTTPChangeAndAudit(t *testing.T) {
	srv, s := serve(t)
	sub, _ := s.Subscribe()
	defer sub.Close()

	r := do(t, srv, "PUT", "/v2/flags/admin/"+StreamingV2, "Bearer "+testAdminKey, `{"enabled":false,"reason":"incident 7"}`)
	if r.status != 200 {
		t.Fatalf("change: %d %s", r.status, r.body)
	}
	f := decode[Flag](t, r)
	if f.Enabled || f.UpdatedBy != "ops" || f.Revision == 0 {
		t.Fatalf("changed flag = %+v", f)
	}
	testutil.Receive(t, "a notification", sub.C)
	if got := decode[UserFlagsResponse](t, do(t, srv, "GET", "/v2/flags", "", "", "X-User", "alice")); got.Flags[StreamingV2] {
		t.Fatal("user still sees streaming on")
	}

	// The second key's name is the actor of its change.
	r = do(t, srv, "PUT", "/v2/flags/admin/"+StreamingV2, "bearer "+testAdminKey+"-2", `{"enabled":true}`)
	if r.status != 200 || decode[Flag](t, r).UpdatedBy != "oncall" {
		t.Fatalf("second key: %d %s", r.status, r.body)
	}

	list := decode[FlagsResponse](t, do(t, srv, "GET", "/v2/flags/admin", "Bearer "+testAdminKey, ""))
	if len(list.Flags) != 1 || list.Flags[0].Name != StreamingV2 || !list.Flags[0].Enabled {
		t.Fatalf("list = %+v", list)
	}

	r = do(t, srv, "GET", "/v2/flags/audit?limit=10", "Bearer "+testAdminKey, "")
	audit := decode[AuditResponse](t, r)
	if r.status != 200 || len(audit.Entries) != 2 {
		t.Fatalf("audit: %d %s", r.status, r.body)
	}
	if e := audit.Entries[1]; e.Actor != "ops" || e.Reason != "incident 7" || e.After.Enabled || e.Before == nil || !e.Before.Enabled {
		t.Fatalf("first change audit = %+v", e)
	}
	if e := audit.Entries[0]; e.Actor != "oncall" || !e.After.Enabled {
		t.Fatalf("second change audit = %+v", e)
	}
}

func TestHTTPBadInput(t *testing.T) {
	srv, s := serve(t)
	auth := "Bearer " + testAdminKey
	tests := []struct {
		name, method, path, body string
		status                   int
		code, msg                string
	}{
		{"bad percentage", "PUT", "/v2/flags/admin/" + StreamingV2, `{"rollout":150}`, 400, CodeInvalid, "percentage"},
		{"fraction", "PUT", "/v2/flags/admin/" + StreamingV2, `{"rollout":12.5}`, 400, CodeInvalid, "percentage"},
		{"bad name", "PUT", "/v2/flags/admin/Streaming_V2", `{"enabled":true}`, 400, CodeInvalid, "flag name"},
		{"unknown field", "PUT", "/v2/flags/admin/" + StreamingV2, `{"enable":true}`, 400, CodeInvalid, "unknown field"},
		{"empty body", "PUT", "/v2/flags/admin/" + StreamingV2, ``, 400, CodeInvalid, "empty body"},
		{"nothing set", "PUT", "/v2/flags/admin/" + StreamingV2, `{}`, 400, CodeInvalid, "sets nothing"},
		{"stale revision", "PUT", "/v2/flags/admin/" + StreamingV2, `{"enabled":true,"ifRevision":99}`, 409, CodeConflict, "revision"},
		{"too large", "PUT", "/v2/flags/admin/" + StreamingV2, `{"reason":"` + strings.Repeat("x", MaxChangeBytes+10) + `"}`, 413, CodeTooLarge, "larger than"},
		{"bad limit", "GET", "/v2/flags/audit?limit=abc", ``, 400, CodeInvalid, "limit"},
		{"limit too high", "GET", "/v2/flags/audit?limit=1001", ``, 400, CodeInvalid, "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, srv, tt.method, tt.path, auth, tt.body)
			e := decode[ErrorResponse](t, r)
			if r.status != tt.status || e.Code != tt.code || !strings.Contains(e.Message, tt.msg) {
				t.Fatalf("got %d %+v, want %d %s containing %q", r.status, e, tt.status, tt.code, tt.msg)
			}
		})
	}
	if f, _ := s.Evaluator().Flag(StreamingV2); f.Revision != 0 {
		t.Fatalf("bad input changed the flag: %+v", f)
	}
	if r := do(t, srv, "DELETE", "/v2/flags/admin/"+StreamingV2, auth, ""); r.status != 405 {
		t.Fatalf("DELETE: %d", r.status)
	}
}

func TestNewAPIKeyChecks(t *testing.T) {
	s, _ := NewMemory(MemoryOptions{Logger: quietLog})
	defer s.Close()
	for _, keys := range [][]AdminKey{
		nil,
		{{Name: "ops", Key: "short"}},
		{{Name: "", Key: testAdminKey}},
		{{Name: "ops", Key: testAdminKey}, {Name: "ops", Key: testAdminKey + "2"}},
	} {
		if _, err := NewAPI(s, keys, nil); err == nil {
			t.Errorf("NewAPI accepted %+v", keys)
		}
	}
}
