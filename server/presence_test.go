package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"encore.app/internal/testutil"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// The assembly wires presence and history for both shells: two servers sharing one
// NATS (the second joins the first's embedded server) see each other's members, with
// the token's permissions; history is served with the same rule; -presence=false
// turns presence off. The first's listener requires its -nats-token: the second
// presents it, a NATS client without it is refused.
func TestPresenceAndHistoryAssembled(t *testing.T) {
	leakCheck(t)
	ctx := testutil.Context(t)
	first, hs1, ws1 := startSecured(t, append(slices.Clone(keyed), "-nats-listen", "127.0.0.1:0", "-nats-token", "join-token",
		"-presence-grace", "50ms", "-ip-connect-rate", "0", "-connect-rate", "0")...)
	natsURL := first.be.(*natsBackend).js.ClientURL()
	if nc, err := nats.Connect(natsURL, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("the embedded NATS let in a client without its token")
	}
	_, hs2, ws2 := startSecured(t, append(slices.Clone(keyed), "-nats-url", natsURL, "-nats-token", "join-token",
		"-presence-grace", "50ms", "-ip-connect-rate", "0", "-connect-rate", "0")...)

	watcher, err := rtclient.Dial(ctx, ws1, &rtclient.DialOptions{Token: mint(t, "w", "room")})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.CloseNow()
	if err := watcher.SubscribePresence(ctx, "s", []string{"room"}, nil); err != nil {
		t.Fatal(err)
	}
	waitDiff(t, ctx, watcher, "w")
	other, err := rtclient.Dial(ctx, ws2, &rtclient.DialOptions{Token: mint(t, "42", "room"), Channels: []string{"room", "user:42:inbox"}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.CloseNow()
	waitDiff(t, ctx, watcher, "42")

	get := func(base, path string, q url.Values) (int, []byte) {
		resp, err := http.Get(base + path + "?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	st, body := get(hs1.URL, "/v2/realtime/presence", url.Values{"channel": {"room"}, "token": {mint(t, "w", "room")}})
	var snap protocol.PresenceSnapshot
	if err := json.Unmarshal(body, &snap); st != 200 || err != nil || snap.Users != 2 {
		t.Fatalf("presence on the first server: %d %s", st, body)
	}
	if st, body := get(hs1.URL, "/v2/realtime/presence", url.Values{"channel": {"user:42:inbox"}, "token": {mint(t, "w", "*")}}); st != 403 {
		t.Fatalf("another user's private channel: %d %s", st, body)
	}
	if st, body := get(hs1.URL, "/v2/realtime/presence", url.Values{"channel": {"user:42:inbox"}, "token": {mint(t, "42")}}); st != 200 {
		t.Fatalf("the owner's private channel: %d %s", st, body)
	}
	if st, _ := get(hs1.URL, "/v2/realtime/history", url.Values{"channel": {"room"}}); st != 401 {
		t.Fatalf("history without a token: %d", st)
	}
	if st, _ := get(hs2.URL, "/v2/realtime/history", url.Values{"channel": {"secret"}, "token": {mint(t, "42", "room")}}); st != 403 {
		t.Fatalf("history of a channel the token does not list: %d", st)
	}
	if st, body := get(hs2.URL, "/v2/realtime/history", url.Values{"channel": {"room"}, "token": {mint(t, "42", "room")}}); st != 200 {
		t.Fatalf("history: %d %s", st, body)
	}

	// The console's presence lookup (an operator, signed in by the admin key) lists both.
	req, _ := http.NewRequest(http.MethodGet, hs1.URL+"/dashboard?presence=room", nil)
	req.Header.Set("Authorization", "Bearer "+testKeyedAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, user := range []string{"w", "42"} {
		if !strings.Contains(string(page), `data-testid="presence-member" data-user="`+user+`"`) {
			t.Fatalf("console presence lookup: %d, no member %s", resp.StatusCode, user)
		}
	}

	_, hs3, _ := startSecured(t, "-presence=false")
	if st, _ := get(hs3.URL, "/v2/realtime/presence", url.Values{"channel": {"public.x"}}); st != http.StatusNotImplemented {
		t.Fatalf("presence off: %d", st)
	}
}

// waitDiff reads frames until a presence_diff announces user's join.
func waitDiff(t *testing.T, ctx context.Context, c *rtclient.Conn, user string) {
	t.Helper()
	for {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("waiting for %s's join: %v", user, err)
		}
		if f.Type == protocol.TypePresenceDiff {
			for _, u := range f.Joins {
				if u == user {
					return
				}
			}
		}
	}
}
