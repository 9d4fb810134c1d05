package stream

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/presence"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// presenceEnv is an engine with a presence tracker on a memory store; the token of a
// connection is its user id, and "user:<id>..." channels are private (the auth rule).
func presenceEnv(t *testing.T, st presence.Store, name string) (*testEnv, *presence.Tracker) {
	t.Helper()
	tr, err := presence.New(presence.Config{Instance: name, Store: st, Grace: 50 * time.Millisecond, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	env := newEnv(t, Config{
		Presence: tr,
		Authenticate: func(r *http.Request) (*Identity, error) {
			return &Identity{UserID: r.URL.Query().Get("token")}, nil
		},
		Authorize: func(id *Identity, ch string) error {
			if rest, ok := strings.CutPrefix(ch, "user:"); ok && !strings.HasPrefix(rest, id.UserID+":") {
				return errors.New("private channel")
			}
			return nil
		},
	}, bus.Config{})
	t.Cleanup(func() { tr.Close() }) // after the engine (cleanups run last first)
	return env, tr
}

// readDiffs reads frames until the joins and leaves of channel seen add up to want
// ("+u" and "-u" words, in order).
func readDiffs(t *testing.T, ctx context.Context, c *rtclient.Conn, channel string, want ...string) {
	t.Helper()
	var got []string
	for len(got) < len(want) {
		f := readUntil(t, ctx, c, protocol.TypePresenceDiff)
		if f.Channel != channel {
			t.Fatalf("diff of %q, want %q", f.Channel, channel)
		}
		for _, u := range f.Joins {
			got = append(got, "+"+u)
		}
		for _, u := range f.Leaves {
			got = append(got, "-"+u)
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("diffs %v, want %v", got, want)
	}
}

// Joins and leaves reach the connections that asked for them (presence: true), a
// presence frame answers a snapshot after the diffs it includes, and GET
// /v2/realtime/presence answers the same.
func TestPresenceThroughTheEngine(t *testing.T) {
	ctx := testutil.Context(t)
	env, _ := presenceEnv(t, presence.NewMemoryStore(), "one")
	watcher := env.dial(ctx, &rtclient.DialOptions{Token: "w"})
	if err := watcher.SubscribePresence(ctx, "s1", []string{"room"}, nil); err != nil {
		t.Fatal(err)
	}
	readUntil(t, ctx, watcher, protocol.TypeSubscribed)
	readDiffs(t, ctx, watcher, "room", "+w")

	alice := env.dial(ctx, &rtclient.DialOptions{Token: "alice", Channels: []string{"room"}})
	readDiffs(t, ctx, watcher, "room", "+alice")
	if err := watcher.RequestPresence(ctx, "p1", "room", 0); err != nil {
		t.Fatal(err)
	}
	f := readUntil(t, ctx, watcher, protocol.TypePresence)
	if f.ID != "p1" || f.Users != 2 || f.Conns != 2 || len(f.Members) != 2 || f.Members[0].User != "alice" {
		t.Fatalf("snapshot %+v", f.PresenceFields)
	}
	// HTTP, for a client that does not hold a socket.
	resp, err := http.Get(env.srv.URL + "/v2/realtime/presence?" + url.Values{"channel": {"room"}, "token": {"x"}, "limit": {"1"}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var snap protocol.PresenceSnapshot
	if err := json.Unmarshal(b, &snap); err != nil || resp.StatusCode != 200 || snap.Users != 2 || len(snap.Members) != 1 || !snap.Truncated {
		t.Fatalf("GET presence: %d %s", resp.StatusCode, b)
	}
	alice.CloseNow()
	readDiffs(t, ctx, watcher, "room", "-alice")

	// A plain subscriber is a member but gets no diffs.
	quietOne := env.dial(ctx, &rtclient.DialOptions{Token: "q", Channels: []string{"room"}})
	readDiffs(t, ctx, watcher, "room", "+q")
	bob := env.dial(ctx, &rtclient.DialOptions{Token: "bob", Channels: []string{"room"}})
	readDiffs(t, ctx, watcher, "room", "+bob")
	bob.CloseNow()
	readDiffs(t, ctx, watcher, "room", "-bob")
	if err := quietOne.RequestPresence(ctx, "p2", "room", 0); err != nil {
		t.Fatal(err)
	}
	if f := readUntil(t, ctx, quietOne, protocol.TypePresence); f.Users != 2 {
		t.Fatalf("snapshot %+v", f.PresenceFields)
	}
	// Unsubscribing leaves the channel and stops the diffs.
	if err := watcher.Send(ctx, &protocol.ClientFrame{Type: protocol.TypeUnsubscribe, Channels: []string{"room"}}); err != nil {
		t.Fatal(err)
	}
	readUntil(t, ctx, watcher, protocol.TypeSubscribed)
	if err := quietOne.Send(ctx, &protocol.ClientFrame{Type: protocol.TypeSubscribe, Channels: []string{"room"}, RequestFields: protocol.RequestFields{Presence: true}}); err != nil {
		t.Fatal(err)
	}
	readDiffs(t, ctx, quietOne, "room", "-w")
}

// Presence has the read permission of the channel: a user's private channel only for
// that user, over the frame and over HTTP; a subscribe refused for a channel adds no
// member.
func TestPresencePermissions(t *testing.T) {
	ctx := testutil.Context(t)
	env, tr := presenceEnv(t, presence.NewMemoryStore(), "one")
	owner := env.dial(ctx, &rtclient.DialOptions{Token: "42"})
	if err := owner.SubscribePresence(ctx, "s", []string{"user:42:inbox"}, nil); err != nil {
		t.Fatal(err)
	}
	readDiffs(t, ctx, owner, "user:42:inbox", "+42")
	other := env.dial(ctx, &rtclient.DialOptions{Token: "7"})
	if err := other.SubscribePresence(ctx, "s", []string{"user:42:inbox"}, nil); err != nil {
		t.Fatal(err)
	}
	if f := readUntil(t, ctx, other, protocol.TypeSubscribed); f.Results[0].Code != protocol.CodeForbidden {
		t.Fatalf("subscribe: %+v", f.Results)
	}
	if err := other.RequestPresence(ctx, "p", "user:42:inbox", 0); err != nil {
		t.Fatal(err)
	}
	if f := readUntil(t, ctx, other, protocol.TypeError); f.ID != "p" || f.Code != protocol.CodeForbidden {
		t.Fatalf("presence of another's channel: %+v", f)
	}
	if err := other.RequestPresence(ctx, "p2", "bad channel", 0); err != nil {
		t.Fatal(err)
	}
	if f := readUntil(t, ctx, other, protocol.TypeError); f.ID != "p2" || f.Code != protocol.CodeBadChannel {
		t.Fatalf("presence of a bad name: %+v", f)
	}
	for _, c := range []struct {
		q      url.Values
		status int
	}{
		{url.Values{"channel": {"user:42:inbox"}, "token": {"7"}}, 403},
		{url.Values{"channel": {"user:42:inbox"}, "token": {"42"}}, 200},
		{url.Values{"token": {"42"}}, 400},
	} {
		resp, err := http.Get(env.srv.URL + "/v2/realtime/presence?" + c.q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%v: %d, want %d", c.q, resp.StatusCode, c.status)
		}
	}
	if s := tr.Stats(); s.Members != 1 {
		t.Fatalf("members %+v: the refused subscribe must not count", s)
	}
}
