package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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
	o.Env.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	setup, setupCancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer setupCancel()
	srv, err := New(setup, o)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
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
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := rtclient.Dial(ctx, "ws"+strings.TrimPrefix(ts.base, "http")+"/v2/realtime/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if f := c.Welcome.Flags; !f["realtime-streaming-v2"] {
		t.Fatalf("welcome flags %v", f)
	}
}

// Flag flip under load: 500 clients streaming while events flow; flag OFF moves all of
// them to long-polling within 2 s, flag ON moves all of them back within 2 s, and every
// client receives every event of its channel exactly once (after dedup).
func TestFlagFlipUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	leakCheck(t)
	ts := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
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
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
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
	waitAll := func(what string, d time.Duration, cond func(*rtclient.Client) bool) time.Duration {
		t.Helper()
		start := time.Now()
		for {
			n := 0
			for _, c := range cs {
				if cond(c) {
					n++
				}
			}
			if n == clients {
				return time.Since(start)
			}
			if time.Since(start) > d {
				t.Fatalf("%s: %d of %d clients after %v", what, n, clients, d)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitAll("connected", 30*time.Second, func(c *rtclient.Client) bool { return c.Stats().Connects > 0 })
	waitFor(t, 10*time.Second, "subscriptions", func() bool { return ts.srv.eng.Snapshot().Subscriptions == clients })

	// Publisher: one batch of `channels` events (one per channel) every 20 ms.
	var published atomic.Int64
	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-pubCtx.Done():
				pubDone <- nil
				return
			case <-tick.C:
			}
			evs := make([]protocol.Event, channels)
			for ch := range channels {
				evs[ch] = protocol.Event{ID: fmt.Sprintf("e-%d-%d", n, ch), Channel: fmt.Sprintf("room.%d", ch), Data: json.RawMessage(`{}`)}
			}
			if err := ts.publish(httpc, evs); err != nil {
				pubDone <- err
				return
			}
			published.Store(int64(n + 1))
		}
	}()
	time.Sleep(500 * time.Millisecond)

	ts.setStreaming(t, false)
	off := waitAll("on long-poll", switchBound, func(c *rtclient.Client) bool { return c.Transport() == protocol.TransportPoll })
	t.Logf("flag OFF: all %d clients on long-poll after %v", clients, off)
	time.Sleep(time.Second)
	s := ts.srv.eng.Snapshot()
	if s.ActiveConnections != 0 {
		t.Errorf("stream connections while OFF: %d", s.ActiveConnections)
	}
	t.Logf("while OFF: %d poll requests, %d waiting, %d moved to poll", s.LongPollRequests, s.LongPollWaiting, s.TransportSwitches["to_poll"])

	ts.setStreaming(t, true)
	on := waitAll("back on the stream", switchBound, func(c *rtclient.Client) bool {
		return c.Transport() == protocol.TransportStream && c.Stats().Connects >= 2
	})
	t.Logf("flag ON: all %d clients back on the stream after %v", clients, on)
	waitFor(t, 5*time.Second, "stream connections", func() bool { return ts.srv.eng.Snapshot().ActiveConnections == clients })
	time.Sleep(500 * time.Millisecond)
	stopPub()
	if err := <-pubDone; err != nil {
		t.Fatal(err)
	}
	batches := int(published.Load())
	perClient := batches // one event per batch per channel
	waitFor(t, 20*time.Second, "every event delivered", func() bool {
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
	t.Logf("%d batches, %d events per client, each exactly once; %d duplicates dropped by dedup, %d poll answers",
		batches, perClient, dups, polls)
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
