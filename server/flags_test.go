package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"encore.app/internal/testutil"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// leakCheck fails t if goroutines started during it outlive it (server included).
// Call it before starting anything: its cleanup runs last.
func leakCheck(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, testutil.LeakOptions(opt)...) })
}

// testAdminKey is the dev key: startServer runs in dev mode (no keys).
const testAdminKey = DevAdminKey

// testServer is the assembled server on a loopback httptest server with its data in a temp dir.
type testServer struct {
	base string // http://127.0.0.1:port
	srv  *Server
}

func startServer(t testing.TB, extra ...string) *testServer {
	t.Helper()
	args := append([]string{"-data", t.TempDir(),
		"-public-prefixes", "*", "-ip-connect-rate", "0"}, extra...) // dev mode, 500 clients on one IP
	o, err := parseArgs(t, nil, args...)
	if err != nil {
		t.Fatal(err)
	}
	o.DrainTimeout = 5 * time.Second
	o.Env.Logger = testutil.Logger(t)
	setup, setupCancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer setupCancel()
	srv, err := New(setup, o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx := testutil.Context(t)
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		hs.Close()
	})
	return &testServer{base: hs.URL, srv: srv}
}

// setStreaming flips realtime-streaming-v2 through the admin HTTP API.
func (ts *testServer) setStreaming(t testing.TB, enabled bool) {
	t.Helper()
	body := fmt.Sprintf(`{"enabled":%v,"reason":"test"}`, enabled)
	req, _ := http.NewRequest(http.MethodPut, ts.base+"/v2/flags/admin/realtime-streaming-v2", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("flag change: %d %s", resp.StatusCode, b)
	}
}

func (ts *testServer) publish(client *http.Client, evs []protocol.Event) error {
	b, _ := json.Marshal(map[string]any{"events": evs})
	req, _ := http.NewRequest(http.MethodPost, ts.base+"/v2/realtime/publish", strings.NewReader(string(b)))
	req.Header.Set("Authorization", "Bearer "+DevPublisherKey)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		return fmt.Errorf("publish: HTTP %d", resp.StatusCode)
	}
	return nil
}

// The flags API is mounted, and the user endpoint evaluates for the stream's user.
func TestFlagsMounted(t *testing.T) {
	leakCheck(t)
	ts := startServer(t)
	resp, err := http.Get(ts.base + "/v2/flags")
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Flags map[string]bool }
	_ = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if !got.Flags["realtime-streaming-v2"] {
		t.Fatalf("flags %v: streaming should default ON", got.Flags)
	}
	req, _ := http.NewRequest(http.MethodGet, ts.base+"/v2/flags/admin", nil)
	req.Header.Set("Authorization", "Bearer wrong-key-wrong-key")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("wrong admin key: %d", resp.StatusCode)
	}
	// The welcome frame carries the user's flags (docs/protocol.md).
	ctx := testutil.Context(t)
	c, err := rtclient.Dial(ctx, "ws"+strings.TrimPrefix(ts.base, "http")+"/v2/realtime/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if f := c.Welcome.Flags; !f["realtime-streaming-v2"] {
		t.Fatalf("welcome flags %v", f)
	}
}

// Flag flip under load: 500 clients streaming while events flow; flag OFF moves every one
// of them to long-polling, flag ON moves every one back to the stream, and every client
// receives every event of its channel exactly once (after dedup), including the events
// published while they were switching and while they were polling. How fast they switch
// is logged here and is the benchmark's business, not this test's.
func TestFlagFlipUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	leakCheck(t)
	ts := startServer(t)
	ctx := testutil.ContextWithin(t, 5*time.Minute) // bounds the clients if the test hangs
	const clients, channels = 500, 10
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients + 10}}
	defer httpc.CloseIdleConnections()

	type rec struct {
		mu   sync.Mutex
		seen map[string]int
	}
	recs := make([]*rec, clients)
	cs := make([]*rtclient.Client, clients)
	streamURL := "ws" + strings.TrimPrefix(ts.base, "http") + "/v2/realtime/stream"
	quiet := testutil.Discard()
	for i := range clients {
		r := &rec{seen: map[string]int{}}
		recs[i] = r
		cs[i] = rtclient.Start(ctx, rtclient.Config{
			URL: streamURL, Channels: []string{fmt.Sprintf("room.%d", i%channels)},
			HTTPClient: httpc, Logger: quiet, BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second,
			OnEvent: func(ev protocol.Event) {
				r.mu.Lock()
				r.seen[ev.ID]++
				r.mu.Unlock()
			},
		})
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	// waitAll waits until cond holds for every client and says how long that took.
	waitAll := func(what string, cond func(*rtclient.Client) bool) time.Duration {
		t.Helper()
		start := time.Now()
		n := 0
		err := testutil.Eventually(ctx, testutil.Patience, func() bool {
			n = 0
			for _, c := range cs {
				if cond(c) {
					n++
				}
			}
			return n == clients
		})
		if err != nil {
			t.Fatalf("%s: %d of %d clients after %v: %v", what, n, clients, time.Since(start).Round(time.Second), err)
		}
		return time.Since(start)
	}
	waitAll("connected", func(c *rtclient.Client) bool { return c.Stats().Connects > 0 })
	testutil.WaitFor(t, "subscriptions", func() bool { return ts.srv.eng.Snapshot().Subscriptions == clients })

	// Publisher: one batch of `channels` events (one per channel) every 20 ms. A batch
	// the server refuses (503 while the bus is slow) is sent again with the same ids, as
	// a real publisher would: the bus dedupes by id.
	var published, retries atomic.Int64
	var lastErr atomic.Pointer[error]
	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-pubCtx.Done():
				return
			case <-tick.C:
			}
			evs := make([]protocol.Event, channels)
			for ch := range channels {
				evs[ch] = protocol.Event{ID: fmt.Sprintf("e-%d-%d", n, ch), Channel: fmt.Sprintf("room.%d", ch), Data: json.RawMessage(`{}`)}
			}
			for {
				err := ts.publish(httpc, evs)
				if err == nil {
					break
				}
				lastErr.Store(&err)
				if retries.Add(1) <= 5 {
					t.Logf("publish batch %d: %v (sent again)", n, err)
				}
				select {
				case <-pubCtx.Done():
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
			published.Store(int64(n + 1))
		}
	}()
	defer func() { stopPub(); <-pubDone }()
	// morePublished waits until n more batches were published (events flow in this phase).
	morePublished := func(what string, n int64) {
		t.Helper()
		from := published.Load()
		if err := testutil.Eventually(ctx, testutil.Patience, func() bool { return published.Load() >= from+n }); err != nil {
			var last error
			if e := lastErr.Load(); e != nil {
				last = *e
			}
			t.Fatalf("%s: %d of %d batches published (%d retries, last error %v): %v", what, published.Load()-from, n, retries.Load(), last, err)
		}
	}
	morePublished("events flowing before the flip", 10)

	ts.setStreaming(t, false)
	off := waitAll("on long-poll", func(c *rtclient.Client) bool { return c.Transport() == protocol.TransportPoll })
	t.Logf("flag OFF: all %d clients on long-poll after %v", clients, off)
	testutil.WaitFor(t, "no stream connection while OFF", func() bool { return ts.srv.eng.Snapshot().ActiveConnections == 0 })
	morePublished("events published while every client polls", 10)
	s := ts.srv.eng.Snapshot()
	if s.ActiveConnections != 0 {
		t.Errorf("stream connections while OFF: %d", s.ActiveConnections)
	}
	t.Logf("while OFF: %d poll requests, %d waiting, %d moved to poll", s.LongPollRequests, s.LongPollWaiting, s.TransportSwitches["to_poll"])

	ts.setStreaming(t, true)
	on := waitAll("back on the stream", func(c *rtclient.Client) bool {
		return c.Transport() == protocol.TransportStream && c.Stats().Connects >= 2
	})
	t.Logf("flag ON: all %d clients back on the stream after %v", clients, on)
	testutil.WaitFor(t, "stream connections", func() bool { return ts.srv.eng.Snapshot().ActiveConnections == clients })
	morePublished("events published after the switch back", 10)
	stopPub()
	<-pubDone
	batches := int(published.Load())
	perClient := batches // one event per batch per channel
	testutil.WaitFor(t, "every event delivered", func() bool {
		for _, r := range recs {
			r.mu.Lock()
			n := len(r.seen)
			r.mu.Unlock()
			if n < perClient {
				return false
			}
		}
		return true
	})
	for i, r := range recs {
		r.mu.Lock()
		ch := i % channels
		for n := range batches {
			if c := r.seen[fmt.Sprintf("e-%d-%d", n, ch)]; c != 1 {
				t.Fatalf("client %d: event e-%d-%d delivered %d times", i, n, ch, c)
			}
		}
		if len(r.seen) != batches {
			t.Fatalf("client %d: %d distinct events, want %d", i, len(r.seen), batches)
		}
		r.mu.Unlock()
	}
	var dups, polls uint64
	for _, c := range cs {
		st := c.Stats()
		dups += st.Duplicates
		polls += st.Polls
	}
	t.Logf("%d batches (%d publishes retried), %d events per client, each exactly once; %d duplicates dropped by dedup, %d poll answers",
		batches, retries.Load(), perClient, dups, polls)
}
