package bus

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"encore.app/internal/testutil"
	"encore.app/realtime/protocol"
)

// JetStream-only behaviour; the shared contract (realtime/bus/bustest) runs in
// bus_contract_test.go against JetStream and Postgres.

// testLogger writes Warn and above to the test log (dropped once the test ended).
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testutil.Writer(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// testCtx bounds a test's calls; d is a floor, raised to testutil.Patience so that a
// loaded machine does not turn a slow answer into a failure.
func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), max(d, testutil.Patience))
	t.Cleanup(cancel)
	return ctx
}

// openBus starts an embedded bus; cfg.DataDir defaults to a fresh temp dir. The bus
// is closed at cleanup (Close is idempotent, tests may close earlier).
func openBus(t *testing.T, cfg Config) *JetStream {
	t.Helper()
	if cfg.URL == "" && cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	b, err := NewJetStream(testCtx(t, 15*time.Second), cfg)
	if err != nil {
		t.Fatalf("NewJetStream: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func ev(ch, id, data string) *protocol.Event {
	e := &protocol.Event{Channel: ch, ID: id, Type: "t"}
	if data != "" {
		e.Data = json.RawMessage(data)
	}
	return e
}

func publish(t *testing.T, b Bus, evs ...*protocol.Event) []Ack {
	t.Helper()
	acks, err := b.Publish(testCtx(t, 10*time.Second), evs)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if len(acks) != len(evs) {
		t.Fatalf("Publish: %d acks for %d events", len(acks), len(evs))
	}
	return acks
}

// collector is a Handler that records events and signals arrivals.
type collector struct {
	mu  sync.Mutex
	evs []*protocol.Event
	ch  chan struct{}
}

func newCollector() *collector { return &collector{ch: make(chan struct{}, 1)} }

func (c *collector) handle(e *protocol.Event) {
	c.mu.Lock()
	c.evs = append(c.evs, e)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

func (c *collector) snapshot() []*protocol.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*protocol.Event(nil), c.evs...)
}

// waitN waits until at least n events arrived, then returns all of them.
func (c *collector) waitN(t *testing.T, n int, d time.Duration) []*protocol.Event {
	t.Helper()
	deadline := time.NewTimer(max(d, testutil.Patience)) // d is a floor, as in testCtx
	defer deadline.Stop()
	for {
		if got := c.snapshot(); len(got) >= n {
			return got
		}
		select {
		case <-c.ch:
		case <-deadline.C:
			t.Fatalf("timeout: got %d events, want %d", len(c.snapshot()), n)
		}
	}
}

func seqs(evs []*protocol.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

func replayAll(t *testing.T, b Bus, channels []string, after, upTo uint64) []*protocol.Event {
	t.Helper()
	var out []*protocol.Event
	err := b.Replay(testCtx(t, 10*time.Second), channels, after, upTo, func(e *protocol.Event) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatalf("Replay(%v, %d, %d): %v", channels, after, upTo, err)
	}
	return out
}

func TestMalformedMessagesSkipped(t *testing.T) {
	b := openBus(t, Config{})
	c := newCollector()
	if err := b.Subscribe(testCtx(t, 20*time.Second), 0, c.handle); err != nil {
		t.Fatal(err)
	}
	publish(t, b, ev("c", "ok1", ""))
	// Someone else writes garbage to the stream.
	if _, err := b.js.Publish(testCtx(t, 5*time.Second), "rt.ev.c", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.Publish(testCtx(t, 5*time.Second), "rt.ev.c", []byte(`{"id":"x","channel":"other","ts":1}`)); err != nil {
		t.Fatal(err)
	}
	publish(t, b, ev("c", "ok2", ""))
	got := c.waitN(t, 2, 5*time.Second)
	if !slices.Equal(seqs(got), []uint64{1, 4}) || got[1].ID != "ok2" {
		t.Fatalf("got %v", seqs(got))
	}
	if r := replayAll(t, b, []string{"c"}, 0, 4); !slices.Equal(seqs(r), []uint64{1, 4}) {
		t.Fatalf("replay got %v", seqs(r))
	}
	if m := b.Malformed(); m != 4 { // twice each: subscribe and replay
		t.Fatalf("Malformed() = %d, want 4", m)
	}
}

func TestConfigErrors(t *testing.T) {
	ctx := testCtx(t, 5*time.Second)
	for _, cfg := range []Config{
		{},                             // no DataDir, no URL
		{DataDir: "x", Stream: "a.b"},  // bad stream name
		{DataDir: "x", Subject: "a.*"}, // bad prefix
		{DataDir: "x", Subject: "a..b"},
		{DataDir: t.TempDir(), ListenAddr: "nope"},
	} {
		if b, err := NewJetStream(ctx, cfg); err == nil {
			_ = b.Close()
			t.Errorf("NewJetStream(%+v) succeeded", cfg)
		}
	}
	// Unreachable external NATS: ErrUnavailable, on its own (not at the caller's deadline).
	start := time.Now()
	_, err := NewJetStream(ctx, Config{URL: "nats://127.0.0.1:1", Logger: testLogger(t)})
	if !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
		t.Fatalf("unreachable URL: %v (context: %v)", err, ctx.Err())
	}
	t.Logf("unreachable URL refused after %v", time.Since(start))
}

func TestCustomStreamAndSubject(t *testing.T) {
	b := openBus(t, Config{Stream: "OTHER", Subject: "app.events"})
	publish(t, b, ev("c.d", "1", ""))
	si, err := b.js.Stream(testCtx(t, 5*time.Second), "OTHER")
	if err != nil {
		t.Fatal(err)
	}
	cfg := si.CachedInfo().Config
	if cfg.Subjects[0] != "app.events.>" || cfg.Storage != jetstream.FileStorage || cfg.MaxAge != DefaultMaxAge ||
		cfg.MaxBytes != DefaultMaxBytes || cfg.Duplicates != DefaultDupWindow || cfg.Discard != jetstream.DiscardOld {
		t.Fatalf("stream config %+v", cfg)
	}
	m, err := si.GetLastMsgForSubject(testCtx(t, 5*time.Second), "app.events.c.d")
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(m.Data, &body); err != nil {
		t.Fatal(err)
	}
	if _, ok := body["seq"]; ok || body["id"] != "1" || body["channel"] != "c.d" {
		t.Fatalf("stored body %s", m.Data)
	}
	if got := replayAll(t, b, []string{"c.d"}, 0, 1); len(got) != 1 || got[0].Channel != "c.d" {
		t.Fatalf("replay %v", got)
	}
}

// Cancelling a subscription's context stops its delivery goroutine (the contract
// checks that its handler is not called again).
func TestSubscribeCtxCancelStopsGoroutine(t *testing.T) {
	b := openBus(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	c := newCollector()
	if err := b.Subscribe(ctx, 0, c.handle); err != nil {
		t.Fatal(err)
	}
	publish(t, b, ev("c", "1", ""))
	c.waitN(t, 1, 5*time.Second)
	cancel()
	done := make(chan struct{})
	go func() { b.wg.Wait(); close(done) }()
	testutil.Receive(t, "the subscription goroutine to stop after ctx cancel", done)
}

// Every replay deletes its consumer, whether it ran to upTo, was stopped by fn or
// had nothing to deliver.
func TestReplayDeletesConsumers(t *testing.T) {
	b := openBus(t, Config{})
	for i := range 10 {
		publish(t, b, ev([]string{"a", "b"}[i%2], "", ""))
	}
	replayAll(t, b, []string{"a", "b"}, 0, 10)
	replayAll(t, b, []string{"nobody"}, 0, 10)
	stop := errors.New("stop")
	if err := b.Replay(testCtx(t, 5*time.Second), []string{"a"}, 0, 10, func(*protocol.Event) error { return stop }); err != stop {
		t.Fatalf("Replay = %v, want fn's error", err)
	}
	si, err := b.js.Stream(testCtx(t, 5*time.Second), b.cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if n := si.CachedInfo().State.Consumers; n != 0 {
		t.Fatalf("%d consumers left after replays", n)
	}
}

// The embedded server keeps the stream on disk: a bus reopened on the same DataDir
// finds the same stream (epoch, range, publisher IDs), and after the stream was
// recreated, the new one.
func TestEpochStableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t, 30*time.Second)

	b1 := openBus(t, Config{DataDir: dir})
	publish(t, b1, ev("c", "1", ""), ev("c", "2", ""), ev("c", "3", ""))
	i1, err := b1.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i1.Epoch != b1.Epoch() || i1.LastSeq != 3 {
		t.Fatalf("info %+v, cached epoch %q", i1, b1.Epoch())
	}
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}

	b2 := openBus(t, Config{DataDir: dir})
	i2, err := b2.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i2 != i1 || b2.Epoch() != i1.Epoch {
		t.Fatalf("after reopen: %+v (cached epoch %q), want %+v", i2, b2.Epoch(), i1)
	}
	if a := publish(t, b2, ev("c", "4", "")); a[0].Seq != 4 {
		t.Fatalf("seq after reopen = %d, want 4", a[0].Seq)
	}
	if a := publish(t, b2, ev("c", "1", "")); !a[0].Duplicate || a[0].Seq != 1 {
		t.Fatalf("dedup across reopen: %+v", a[0])
	}
	if err := b2.js.DeleteStream(ctx, b2.cfg.Stream); err != nil {
		t.Fatal(err)
	}
	publish(t, b2, ev("c", "x", ""))
	i3, err := b2.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}

	b3 := openBus(t, Config{DataDir: dir})
	if i4, _ := b3.Info(ctx); i4 != i3 || i4.Epoch == i1.Epoch {
		t.Fatalf("reopen after recreate: %+v, want %+v", i4, i3)
	}
}

// With ListenAddr the embedded server accepts other processes' buses on ClientURL;
// they share its stream, and when its owner closes it they report ErrUnavailable.
func TestExternalURLSharesStream(t *testing.T) {
	a := openBus(t, Config{ListenAddr: "127.0.0.1:0"})
	url := a.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("ClientURL = %q", url)
	}
	b := openBus(t, Config{URL: url})
	if a.Epoch() != b.Epoch() || a.Epoch() == "" {
		t.Fatalf("epochs differ: %q vs %q", a.Epoch(), b.Epoch())
	}
	cb := newCollector()
	if err := b.Subscribe(testCtx(t, 20*time.Second), 0, cb.handle); err != nil {
		t.Fatal(err)
	}
	publish(t, a, ev("x.y", "from-a", `{"a":1}`))
	if got := cb.waitN(t, 1, 5*time.Second); got[0].ID != "from-a" {
		t.Fatalf("got %+v", got[0])
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := b.Publish(pctx, []*protocol.Event{ev("x.y", "", "")}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Publish with the server gone: %v", err)
	}
}

// With ListenAuth the embedded server's listener refuses clients without the token (or
// the user and password); the owner's own connection and joiners that present it work.
func TestListenerRequiresAuth(t *testing.T) {
	for _, tc := range []struct {
		name string
		auth ClientAuth
	}{
		{"token", ClientAuth{Token: "s3cret-token"}},
		{"user and password", ClientAuth{User: "rt", Password: "s3cret-pw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := openBus(t, Config{ListenAddr: "127.0.0.1:0", ListenAuth: tc.auth})
			url := a.ClientURL()
			nc, err := nats.Connect(url, nats.MaxReconnects(0))
			if err == nil {
				nc.Close()
				t.Fatal("a client without credentials was let in")
			}
			if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
				t.Fatalf("connect without credentials: %v, want an authorization error", err)
			}
			opts, err := tc.auth.Options()
			if err != nil {
				t.Fatal(err)
			}
			b := openBus(t, Config{URL: url, NATSOptions: opts})
			cb := newCollector()
			if err := b.Subscribe(testCtx(t, 20*time.Second), 0, cb.handle); err != nil {
				t.Fatal(err)
			}
			publish(t, a, ev("x.y", "from-a", `{"a":1}`))
			if got := cb.waitN(t, 1, 5*time.Second); got[0].ID != "from-a" {
				t.Fatalf("got %+v", got[0])
			}
		})
	}
	_, err := NewJetStream(testCtx(t, 15*time.Second), Config{DataDir: t.TempDir(), ListenAddr: "127.0.0.1:0",
		ListenAuth: ClientAuth{NKeyFile: "/nonexistent"}, Logger: testLogger(t)})
	if !errors.Is(err, ErrClientAuth) {
		t.Fatalf("an NKey for the listener: %v, want ErrClientAuth", err)
	}
}
