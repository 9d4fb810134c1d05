package rtclient_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/presence"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
	"encore.app/realtime/stream"
)

// The Client's History and Presence ask the instance it streams from, with its token;
// Config.Presence delivers joins and leaves to OnPresence.
func TestClientHistoryAndPresence(t *testing.T) {
	ctx := testutil.Context(t)
	b, err := bus.NewJetStream(ctx, bus.Config{DataDir: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tr, err := presence.New(presence.Config{Instance: "one", Store: presence.NewMemoryStore(), Grace: 10 * time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	e, err := stream.New(stream.Config{Logger: quiet(), PublisherKey: "k", Presence: tr,
		Authenticate: func(r *http.Request) (*stream.Identity, error) {
			return &stream.Identity{UserID: r.URL.Query().Get("token")}, nil
		},
		Authorize: func(_ *stream.Identity, ch string) error {
			if ch == "secret" {
				return errors.New("no")
			}
			return nil
		}}, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.Handler())
	defer func() { e.Close(); srv.Close() }()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v2/realtime/stream"
	acks, err := e.Publish(ctx, []*protocol.Event{{ID: "a", Channel: "c"}, {ID: "b", Channel: "c"}, {ID: "x", Channel: "other"}})
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var diffs []string
	c := rtclient.Start(ctx, rtclient.Config{URL: url, Token: "alice", Channels: []string{"c"}, Presence: true, Logger: quiet(),
		OnPresence: func(d protocol.PresenceDiff) {
			mu.Lock()
			diffs = append(diffs, d.Joins...)
			mu.Unlock()
		}})
	defer c.Close()
	testutil.WaitFor(t, "the client connected", func() bool { return c.Stats().Connects > 0 })
	testutil.WaitFor(t, "the engine dispatched the events", func() bool { return e.Snapshot().HeadSeq >= acks[2].Seq })
	h, err := c.History(ctx, "c", rtclient.HistoryOptions{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Events) != 2 || h.Events[0].ID != "a" || h.Events[1].ID != "b" || h.Cursor == nil || h.Cursor.Seq != acks[2].Seq {
		t.Fatalf("history %+v", h)
	}
	var re *rtclient.RequestError
	if _, err := c.History(ctx, "secret", rtclient.HistoryOptions{}); !errors.As(err, &re) || re.Status != 403 || re.Code != protocol.CodeForbidden {
		t.Fatalf("forbidden history: %v", err)
	}
	// bob joins: alice's client is told.
	bob := rtclient.Start(ctx, rtclient.Config{URL: url, Token: "bob", Channels: []string{"c"}, Logger: quiet()})
	defer bob.Close()
	testutil.WaitFor(t, "bob's join on alice's client", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(diffs, "bob")
	})
	s, err := c.Presence(ctx, "c", 0)
	if err != nil || s.Users != 2 {
		t.Fatalf("presence %+v %v", s, err)
	}
}
