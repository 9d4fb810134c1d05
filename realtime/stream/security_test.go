package stream

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/bus/bustest"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// Frames over the per-connection rate are answered rate_limited and ignored; a burst of
// them in a row closes the connection 4102 with a retry hint.
func TestClientMessageRate(t *testing.T) {
	env := newEnv(t, Config{ClientMessageRate: 1, ClientMessageBurst: 5}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)
	for i := range 5 {
		if err := c.Send(ctx, &protocol.ClientFrame{Type: protocol.TypePing, TS: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
		if f, err := c.ReadFrame(ctx); err != nil || f.Type != protocol.TypePong {
			t.Fatalf("ping %d: %+v %v", i, f, err)
		}
	}
	if err := c.Send(ctx, &protocol.ClientFrame{Type: protocol.TypePing, TS: 6}); err != nil {
		t.Fatal(err)
	}
	if f, err := c.ReadFrame(ctx); err != nil || f.Type != protocol.TypeError || f.Code != protocol.CodeRateLimited {
		t.Fatalf("over the rate: %+v %v", f, err)
	}
	for i := range 4 {
		_ = c.Send(ctx, &protocol.ClientFrame{Type: protocol.TypePing, TS: int64(7 + i)})
	}
	_, err := readUntilClose(ctx, c)
	if code := rtclient.CloseCode(err); code != protocol.CloseRateLimited || protocol.RetryHint(rtclient.CloseReason(err)) == 0 {
		t.Fatalf("close %d %q, want 4102 with retry", code, rtclient.CloseReason(err))
	}
	testutil.WaitFor(t, "rate_limited disconnect", func() bool {
		s := env.eng.Snapshot()
		return s.Disconnects["rate_limited"] == 1 && s.MessagesRateLimited == 5
	})
}

// 100 pings at once on a connection allowed a burst of 50: the 50 accepted ones are
// answered, in order, the others get rate_limited errors, and the close 4102 comes
// after all of them.
func TestRateLimitedCloseAnswersAcceptedFrames(t *testing.T) {
	const burst = 50
	env := newEnv(t, Config{ClientMessageRate: 1e-6, ClientMessageBurst: burst}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)
	for i := range 2 * burst {
		if err := c.Send(ctx, &protocol.ClientFrame{Type: protocol.TypePing, TS: int64(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	var pongs []int64
	limited := 0
	for {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			if code := rtclient.CloseCode(err); code != protocol.CloseRateLimited {
				t.Fatalf("close %d (%v), want 4102", code, err)
			}
			break
		}
		switch {
		case f.Type == protocol.TypePong:
			pongs = append(pongs, f.TS)
		case f.Type == protocol.TypeError && f.Code == protocol.CodeRateLimited:
			limited++
		default:
			t.Fatalf("unexpected frame %+v", f)
		}
	}
	if len(pongs) != burst {
		t.Fatalf("%d pongs, want %d (one per accepted ping)", len(pongs), burst)
	}
	for i, ts := range pongs {
		if ts != int64(i+1) {
			t.Fatalf("pong %d echoes %d, want %d", i, ts, i+1)
		}
	}
	if limited != burst-1 { // the 50th refusal closes instead
		t.Errorf("%d rate_limited errors, want %d", limited, burst-1)
	}
}

// Channel names: the length limit and the characters, per channel.
func TestChannelNameLimits(t *testing.T) {
	env := newEnv(t, Config{MaxChannelLength: 16}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)
	ok16 := strings.Repeat("a", 16)
	f := subscribe(t, ctx, c, nil, ok16, ok16+"b", "a b", "a..b", ".a", "a.", "ä", "a*", "user:1:x")
	if c.Welcome.Limits.MaxChannelLength != 16 {
		t.Fatalf("welcome limits %+v", c.Welcome.Limits)
	}
	for _, r := range f.Results {
		wantOK := r.Channel == ok16 || r.Channel == "user:1:x"
		if r.OK != wantOK || (!wantOK && r.Code != protocol.CodeBadChannel) {
			t.Errorf("%q: %+v", r.Channel, r)
		}
	}
}

// A channel name far over the limit (over 528 bytes used to refuse the whole frame) is
// refused alone, with a per-channel bad_channel; the other channels of the frame are
// subscribed and get their events.
func TestLongChannelNameRefusedAlone(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)
	long := strings.Repeat("n", 600)
	f := subscribe(t, ctx, c, nil, "before", long, "after")
	want := map[string]string{"before": "", long: protocol.CodeBadChannel, "after": ""}
	if len(f.Results) != len(want) {
		t.Fatalf("results %+v", f.Results)
	}
	for _, r := range f.Results {
		if code, ok := want[r.Channel]; !ok || r.OK != (code == "") || r.Code != code {
			t.Errorf("result for a %d-byte channel: ok %v code %q, want code %q", len(r.Channel), r.OK, r.Code, code)
		}
	}
	env.publishN("after", 0, 1)
	env.publishN("before", 0, 1)
	evs, _ := readEvents(t, ctx, c, 2)
	if evs[0].ID != "after-0" || evs[1].ID != "before-0" {
		t.Fatalf("events %+v", evs)
	}
}

// NATS stopped under load: publishes answer 503 (Retry-After) instead of waiting (the
// breaker opens), connected clients stay connected, a recovery from the bus answers
// "not recovered, unavailable", the breaker shows in the metrics and closes by itself
// after NATS returns, and every acknowledged event reaches every client. How fast the
// answers come is logged, not asserted.
func TestNATSDownUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	nsrv := bustest.Start(t)
	ctx := testutil.ContextWithin(t, 5*time.Minute) // bounds the test's clients and requests
	js, err := bus.NewJetStream(ctx, bus.Config{URL: nsrv.URL(), Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	br := bus.NewBreaker(js, bus.BreakerConfig{Connected: js.Conn().IsConnected, OpenFor: 500 * time.Millisecond})
	eng, err := New(Config{Logger: testutil.Logger(t), PublisherKey: "k", WindowEvents: 16}, br)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(eng.Handler())
	defer func() { eng.Close(); srv.Close(); br.Close() }()
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http") + "/v2/realtime/stream"

	const clients = 20
	var mu sync.Mutex
	got := make([]map[string]bool, clients)
	var readers sync.WaitGroup
	conns := make([]*rtclient.Conn, clients)
	for i := range clients {
		c, err := rtclient.Dial(ctx, wsURL, &rtclient.DialOptions{Channels: []string{"load"}})
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = c
		got[i] = map[string]bool{}
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				f, err := c.ReadFrame(ctx)
				if err != nil {
					return
				}
				mu.Lock()
				for _, ev := range f.Events {
					got[i][ev.ID] = true
				}
				mu.Unlock()
			}
		}()
	}
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
		readers.Wait()
	}()

	type result struct {
		id     string
		status int
		took   time.Duration
		retry  string
	}
	var results []result
	n := 0
	publish := func() result {
		n++
		id := fmt.Sprint("e-", n)
		body := fmt.Sprintf(`{"channel":"load","id":%q}`, id)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v2/realtime/publish", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer k")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		r := result{id: id, status: resp.StatusCode, took: time.Since(start), retry: resp.Header.Get("Retry-After")}
		results = append(results, r)
		return r
	}
	for range 50 {
		if r := publish(); r.status != http.StatusOK {
			t.Fatalf("before the outage: %+v", r)
		}
	}

	nsrv.Stop()
	var worst time.Duration
	failed := 0
	for failed < 20 { // enough to open the breaker (3 failures) and be refused by it
		r := publish()
		if r.status == http.StatusOK {
			continue // acked just before the server went
		}
		if r.status != http.StatusServiceUnavailable || r.retry == "" {
			t.Fatalf("while down: %+v", r)
		}
		failed++
		worst = max(worst, r.took)
		time.Sleep(5 * time.Millisecond)
	}

	if s := eng.Snapshot(); s.Breaker != "open" && s.Breaker != "half-open" {
		t.Fatalf("breaker %q while NATS is down", s.Breaker)
	}
	// A recovery that needs the bus answers "not recovered" at once.
	start := time.Now()
	rc, err := rtclient.Dial(ctx, wsURL, &rtclient.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f := subscribe(t, ctx, rc, &protocol.Cursor{Seq: 1, Epoch: eng.Epoch()}, "load")
	rc.CloseNow()
	if f.Recovery == nil || f.Recovery.Recovered || f.Recovery.Reason != protocol.ReasonUnavailable {
		t.Fatalf("recovery while down: %+v", f.Recovery)
	}
	recoveryTook := time.Since(start)
	testutil.WaitFor(t, "the recovery probe to go", func() bool { return eng.Snapshot().ActiveConnections == clients })
	if s := eng.Snapshot(); s.Disconnects["read_error"]+s.Disconnects["kicked"]+s.Disconnects["write_error"] != 1 {
		t.Fatalf("clients lost while NATS was down: active %d, disconnects %v", s.ActiveConnections, s.Disconnects)
	}

	nsrv.Restart()
	up := time.Now()
	testutil.WaitFor(t, "publishing to recover", func() bool { return publish().status == http.StatusOK })
	back := time.Since(up)
	for range 50 {
		if r := publish(); r.status != http.StatusOK {
			t.Fatalf("after recovery: %+v", r)
		}
	}
	if s := eng.Snapshot(); s.Breaker != "closed" {
		t.Fatalf("breaker %q after recovery", s.Breaker)
	}
	var acked []string
	for _, r := range results {
		if r.status == http.StatusOK {
			acked = append(acked, r.id)
		}
	}
	testutil.WaitFor(t, "every acked event at every client", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range clients {
			for _, id := range acked {
				if !got[i][id] {
					return false
				}
			}
		}
		return true
	})
	if s := eng.Snapshot(); s.ActiveConnections != clients {
		t.Fatalf("active %d after the outage", s.ActiveConnections)
	}
	m, _ := json.Marshal(map[string]any{"acked": len(acked), "failed": failed, "slowest503": worst.String(),
		"notRecoveredIn": recoveryTook.String(), "publishingAgainAfter": back.String()})
	t.Logf("outage figures: %s", m)
}

// The breaker state reaches both metrics endpoints.
func TestBreakerStateInMetrics(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	eng, err := New(Config{Logger: testutil.Logger(t)}, bus.NewBreaker(env.bus, bus.BreakerConfig{}))
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	srv := httptest.NewServer(eng.Handler())
	defer srv.Close()
	if s := eng.Snapshot(); s.Breaker != "closed" {
		t.Fatalf("snapshot breaker %q", s.Breaker)
	}
	if s := env.eng.Snapshot(); s.Breaker != "" {
		t.Fatalf("engine without breaker reports %q", s.Breaker)
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b := new(strings.Builder)
	_, _ = io.Copy(b, resp.Body)
	if !strings.Contains(b.String(), `realtime_bus_breaker_state{state="closed"} 1`) {
		t.Fatalf("prometheus output lacks the breaker state:\n%.2000s", b.String())
	}
}
