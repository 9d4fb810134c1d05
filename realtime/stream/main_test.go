package stream

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Main(m), testutil.LeakOptions()...)
}

// testEnv is one engine on a real embedded JetStream behind a real HTTP server.
type testEnv struct {
	t   testing.TB
	bus bus.Bus
	eng *Engine
	srv *httptest.Server
	url string // ws URL of the stream
}

func newEnv(t testing.TB, cfg Config, bcfg bus.Config) *testEnv {
	t.Helper()
	return newEnvWrapped(t, cfg, bcfg, nil)
}

// newEnvWrapped is newEnv with the engine's bus wrapped by wrap (nil: unwrapped).
func newEnvWrapped(t testing.TB, cfg Config, bcfg bus.Config, wrap func(bus.Bus) bus.Bus) *testEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	if bcfg.DataDir == "" && bcfg.URL == "" {
		bcfg.DataDir = t.TempDir()
	}
	bcfg.Logger = testutil.Logger(t)
	b, err := bus.NewJetStream(ctx, bcfg)
	if err != nil {
		t.Fatalf("bus: %v", err)
	}
	return newEnvOnBus(t, cfg, b, wrap)
}

// newEnvOnBus is newEnvWrapped on a bus the caller opened (the env closes it).
func newEnvOnBus(t testing.TB, cfg Config, b bus.Bus, wrap func(bus.Bus) bus.Bus) *testEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	if cfg.Logger == nil {
		cfg.Logger = testutil.Logger(t)
	}
	if cfg.PublisherKey == "" {
		cfg.PublisherKey = "test-key"
	}
	var eb bus.Bus = b
	if wrap != nil {
		eb = wrap(b)
	}
	e, err := New(cfg, eb)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		b.Close()
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.Handler())
	env := &testEnv{t: t, bus: b, eng: e, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/v2/realtime/stream"}
	t.Cleanup(env.close)
	return env
}

func (env *testEnv) close() {
	env.eng.Close()
	env.srv.Close()
	env.bus.Close()
}

// publish appends events through the engine (the same path as the publish endpoint).
func (env *testEnv) publish(evs ...*protocol.Event) []bus.Ack {
	env.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	acks, err := env.eng.Publish(ctx, evs)
	if err != nil {
		env.t.Fatalf("publish: %v", err)
	}
	return acks
}

// tryPublishN is publishN for goroutines other than the test's: it returns the error.
func (env *testEnv) tryPublishN(channel string, from, n int) error {
	var evs []*protocol.Event
	for i := from; i < from+n; i++ {
		evs = append(evs, &protocol.Event{ID: fmt.Sprintf("%s-%d", channel, i), Channel: channel})
	}
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	_, err := env.eng.Publish(ctx, evs)
	return err
}

// publishN publishes n events on channel with ids "<channel>-<i>" and data {"n":i}.
func (env *testEnv) publishN(channel string, from, n int) []bus.Ack {
	env.t.Helper()
	var all []bus.Ack
	for start := from; start < from+n; start += 500 {
		var evs []*protocol.Event
		for i := start; i < min(from+n, start+500); i++ {
			evs = append(evs, &protocol.Event{ID: fmt.Sprintf("%s-%d", channel, i), Channel: channel,
				Type: "test", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
		}
		all = append(all, env.publish(evs...)...)
	}
	return all
}

func (env *testEnv) dial(ctx context.Context, o *rtclient.DialOptions) *rtclient.Conn {
	env.t.Helper()
	c, err := rtclient.Dial(ctx, env.url, o)
	if err != nil {
		env.t.Fatalf("dial: %v", err)
	}
	env.t.Cleanup(func() { c.CloseNow() })
	return c
}

// subscribe sends a subscribe and reads until its answer, returning it.
func subscribe(t testing.TB, ctx context.Context, c *rtclient.Conn, cur *protocol.Cursor, channels ...string) *rtclient.Frame {
	t.Helper()
	if err := c.Subscribe(ctx, "s", channels, cur); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	for {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("waiting for subscribed: %v", err)
		}
		if f.Type == protocol.TypeSubscribed {
			return f
		}
		if f.Type == protocol.TypeEvents {
			t.Fatalf("events before the subscribe answer")
		}
	}
}

// readEvents reads frames until n events arrived, failing on timeout. Other frames are
// returned too.
func readEvents(t testing.TB, ctx context.Context, c *rtclient.Conn, n int) (evs []protocol.Event, frames []*rtclient.Frame) {
	t.Helper()
	for len(evs) < n {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("after %d of %d events: %v", len(evs), n, err)
		}
		frames = append(frames, f)
		evs = append(evs, f.Events...)
	}
	return evs, frames
}

// checkSequence asserts evs are exactly events from..from+n-1 of channel, in order.
func checkSequence(t testing.TB, evs []protocol.Event, channel string, from, n int) {
	t.Helper()
	if len(evs) != n {
		t.Fatalf("got %d events, want %d", len(evs), n)
	}
	var last uint64
	for i, ev := range evs {
		want := fmt.Sprintf("%s-%d", channel, from+i)
		if ev.ID != want || ev.Channel != channel {
			t.Fatalf("event %d: id %q channel %q, want %q on %q", i, ev.ID, ev.Channel, want, channel)
		}
		if ev.Seq <= last {
			t.Fatalf("event %d: seq %d not above %d", i, ev.Seq, last)
		}
		last = ev.Seq
	}
}

func httpPost(t testing.TB, url, key, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// upgradeRequest is a WebSocket upgrade request for u, for raw clients that write it
// themselves.
func upgradeRequest(u *url.URL) []byte {
	var key [16]byte
	_, _ = rand.Read(key[:])
	return []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\nSec-WebSocket-Version: 13\r\n\r\n")
}
