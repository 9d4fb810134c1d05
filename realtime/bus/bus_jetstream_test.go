package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"encore.app/internal/testutil"
	"encore.app/realtime/protocol"
)

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

func publish(t *testing.T, b *JetStream, evs ...*protocol.Event) []Ack {
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

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func equalSeqs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func replayAll(t *testing.T, b *JetStream, channels []string, after, upTo uint64) []*protocol.Event {
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

func TestPublishSubscribeInOrder(t *testing.T) {
	b := openBus(t, Config{})
	c := newCollector()
	if err := b.Subscribe(testCtx(t, 20*time.Second), 0, c.handle); err != nil {
		t.Fatal(err)
	}
	var sent []*protocol.Event
	for i := range 4 {
		var batch []*protocol.Event
		for k := range 5 {
			n := i*5 + k
			batch = append(batch, ev(fmt.Sprintf("room.%d", n%3), fmt.Sprintf("id-%d", n), fmt.Sprintf(`{"n": %d, "s":"x"}`, n)))
		}
		publish(t, b, batch...)
		sent = append(sent, batch...)
	}
	got := c.waitN(t, len(sent), 10*time.Second)
	if len(got) != len(sent) {
		t.Fatalf("got %d events, want %d", len(got), len(sent))
	}
	for i, g := range got {
		w := sent[i]
		if g.Seq != uint64(i+1) || g.ID != w.ID || g.Channel != w.Channel || g.Type != w.Type ||
			string(g.Data) != string(w.Data) || g.TS != w.TS || g.TS == 0 {
			t.Fatalf("event %d: got %+v (data %s), want %+v (data %s) with seq %d", i, g, g.Data, w, w.Data, i+1)
		}
	}
}

func TestDuplicateIDAppendedOnce(t *testing.T) {
	b := openBus(t, Config{})
	a1 := publish(t, b, ev("c", "dup-1", `1`), ev("c", "other", `2`))
	a2 := publish(t, b, ev("c", "dup-1", `3`))
	if a1[0].Duplicate || a1[0].Seq != 1 || a1[1].Seq != 2 {
		t.Fatalf("first acks: %+v", a1)
	}
	if !a2[0].Duplicate || a2[0].Seq != 1 || a2[0].ID != "dup-1" {
		t.Fatalf("duplicate ack: %+v, want Duplicate with seq 1", a2[0])
	}
	// Duplicate inside one batch.
	a3 := publish(t, b, ev("c", "dup-2", ``), ev("c", "dup-2", ``))
	if a3[0].Duplicate || a3[0].Seq != 3 || !a3[1].Duplicate || a3[1].Seq != 3 {
		t.Fatalf("in-batch duplicate acks: %+v", a3)
	}
	info, err := b.Info(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if info.LastSeq != 3 {
		t.Fatalf("LastSeq = %d, want 3", info.LastSeq)
	}
	got := replayAll(t, b, []string{"c"}, 0, 3)
	if string(got[0].Data) != `1` {
		t.Fatalf("stored data %s, want the original", got[0].Data)
	}
}

func TestBatchAcksInOrder(t *testing.T) {
	b := openBus(t, Config{})
	var batch []*protocol.Event
	for i := range 100 {
		e := ev(fmt.Sprintf("ch%d", i%7), "", fmt.Sprintf(`{"i":%d}`, i))
		if i%2 == 0 {
			e.ID = fmt.Sprintf("given-%d", i)
		}
		batch = append(batch, e)
	}
	before := time.Now().UnixMilli()
	acks := publish(t, b, batch...)
	for i, a := range acks {
		if a.Seq != uint64(i+1) || a.Duplicate || a.ID == "" || a.ID != batch[i].ID {
			t.Fatalf("ack %d = %+v (event ID %q)", i, a, batch[i].ID)
		}
		if batch[i].TS < before || batch[i].TS > time.Now().UnixMilli() {
			t.Fatalf("event %d TS %d not set to now", i, batch[i].TS)
		}
	}
	if acks[0].ID != "given-0" || strings.HasPrefix(acks[1].ID, "given") {
		t.Fatalf("IDs: %q %q", acks[0].ID, acks[1].ID)
	}
	// Replaying returns the generated IDs and TS as published.
	got := replayAll(t, b, []string{"ch1"}, 0, 100)
	if got[0].ID != batch[1].ID || got[0].TS != batch[1].TS {
		t.Fatalf("replayed %+v, want ID %q TS %d", got[0], batch[1].ID, batch[1].TS)
	}
}

func TestPublishRejectsInvalid(t *testing.T) {
	b := openBus(t, Config{})
	ctx := testCtx(t, 5*time.Second)
	for _, tc := range []struct {
		ev   *protocol.Event
		want error
	}{
		{ev("a b", "", ""), protocol.ErrBadChannel},
		{ev("a.*", "", ""), protocol.ErrBadChannel},
		{ev("a.>", "", ""), protocol.ErrBadChannel},
		{ev("", "", ""), protocol.ErrBadChannel},
		{ev("ok", "bad id", ""), protocol.ErrBadEvent},
		{ev("ok", "", "{not json"), protocol.ErrBadEvent},
	} {
		if _, err := b.Publish(ctx, []*protocol.Event{ev("fine", "", ""), tc.ev}); !errors.Is(err, tc.want) {
			t.Errorf("Publish(%+v) = %v, want %v", tc.ev, err, tc.want)
		}
	}
	info, _ := b.Info(ctx)
	if info.LastSeq != 0 {
		t.Fatalf("a rejected batch appended events: LastSeq %d", info.LastSeq)
	}
}

func TestSubscribeFromSeq(t *testing.T) {
	b := openBus(t, Config{})
	for i := range 10 {
		publish(t, b, ev("c", fmt.Sprint("a", i), ""))
	}
	c := newCollector()
	if err := b.Subscribe(testCtx(t, 20*time.Second), 6, c.handle); err != nil {
		t.Fatal(err)
	}
	if got := c.waitN(t, 4, 5*time.Second); !equalSeqs(seqs(got), seqRange(7, 10)) {
		t.Fatalf("got seqs %v, want 7..10", seqs(got))
	}
	publish(t, b, ev("c", "b1", ""), ev("d", "b2", ""), ev("c", "b3", ""))
	c.waitN(t, 7, 5*time.Second)
	time.Sleep(200 * time.Millisecond) // nothing else may arrive
	if got := c.snapshot(); !equalSeqs(seqs(got), seqRange(7, 13)) {
		t.Fatalf("got seqs %v, want 7..13", seqs(got))
	}

	// A subscription ahead of the head waits for its sequence.
	c3 := newCollector()
	if err := b.Subscribe(testCtx(t, 20*time.Second), 14, c3.handle); err != nil {
		t.Fatal(err)
	}

	// Subscribing at the head delivers only new events.
	info, _ := b.Info(testCtx(t, 5*time.Second))
	c2 := newCollector()
	if err := b.Subscribe(testCtx(t, 20*time.Second), info.LastSeq, c2.handle); err != nil {
		t.Fatal(err)
	}
	publish(t, b, ev("c", "new", ""))
	if got := c2.waitN(t, 1, 5*time.Second); len(got) != 1 || got[0].Seq != 14 || got[0].ID != "new" {
		t.Fatalf("head subscription got %v", seqs(got))
	}
	publish(t, b, ev("c", "newer", ""))
	if got := c3.waitN(t, 1, 5*time.Second); len(got) != 1 || got[0].Seq != 15 {
		t.Fatalf("subscription ahead of head got %v", seqs(got))
	}
}

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
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("subscription goroutine did not stop after ctx cancel")
	}
	publish(t, b, ev("c", "2", ""))
	time.Sleep(100 * time.Millisecond)
	if n := len(c.snapshot()); n != 1 {
		t.Fatalf("handler called after cancel: %d events", n)
	}
}

func TestCloseStopsSubscribe(t *testing.T) {
	b := openBus(t, Config{})
	c := newCollector()
	if err := b.Subscribe(context.Background(), 0, c.handle); err != nil {
		t.Fatal(err)
	}
	publish(t, b, ev("c", "1", ""))
	c.waitN(t, 1, 5*time.Second)
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	if err := testutil.Receive(t, "Close with a subscription running", closed); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	ctx := testCtx(t, time.Second)
	if _, err := b.Publish(ctx, []*protocol.Event{ev("c", "", "")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if err := b.Subscribe(ctx, 0, c.handle); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	if err := b.Replay(ctx, []string{"c"}, 0, 1, func(*protocol.Event) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Replay after Close: %v", err)
	}
	if _, err := b.Info(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Info after Close: %v", err)
	}
	// goleak (TestMain) checks that the delivery goroutine and the server are gone.
}

func TestReplayFilterAndBounds(t *testing.T) {
	b := openBus(t, Config{})
	chans := []string{"a", "b", "b.c", "b.c.d", "user:42", "org=1@x", "a-b_c"}
	var all []*protocol.Event
	for i := range 70 {
		e := ev(chans[i%len(chans)], fmt.Sprint("e", i), fmt.Sprintf(`{"i":%d}`, i))
		all = append(all, e)
	}
	acks := publish(t, b, all...)
	for i, a := range acks {
		all[i].Seq = a.Seq
	}
	want := func(channels []string, after, upTo uint64) []uint64 {
		set := map[string]bool{}
		for _, c := range channels {
			set[c] = true
		}
		var out []uint64
		for _, e := range all {
			if set[e.Channel] && e.Seq > after && e.Seq <= upTo {
				out = append(out, e.Seq)
			}
		}
		return out
	}
	for _, tc := range []struct {
		channels    []string
		after, upTo uint64
	}{
		{[]string{"b"}, 0, 70}, // must not match b.c
		{[]string{"b.c"}, 0, 70},
		{[]string{"b.c", "user:42"}, 10, 50},
		{[]string{"user:42", "org=1@x", "a-b_c", "a"}, 3, 64},
		{[]string{"a", "a"}, 0, 70}, // duplicates are fine
		{[]string{"b.c.d"}, 69, 70},
		{[]string{"b.c.d"}, 0, 1000}, // upTo beyond the head
	} {
		got := replayAll(t, b, tc.channels, tc.after, tc.upTo)
		if w := want(tc.channels, tc.after, tc.upTo); !equalSeqs(seqs(got), w) {
			t.Errorf("Replay(%v, %d, %d) = %v, want %v", tc.channels, tc.after, tc.upTo, seqs(got), w)
		}
		for _, g := range got {
			src := all[g.Seq-1]
			if g.ID != src.ID || g.Channel != src.Channel || string(g.Data) != string(src.Data) || g.TS != src.TS {
				t.Fatalf("replayed %+v, want %+v", g, src)
			}
		}
	}

	// Nothing to replay: returns promptly.
	for _, tc := range []struct {
		channels    []string
		after, upTo uint64
	}{
		{[]string{"nobody"}, 0, 70},
		{[]string{"a"}, 70, 70},
		{[]string{"a"}, 70, 100},
		{[]string{"a"}, 90, 100}, // after beyond the head
		{[]string{"a"}, 50, 40},
		{nil, 0, 70},
		{[]string{"a"}, 64, 70}, // "a" at 64 is excluded; next "a" is at 71 (does not exist)
	} {
		got := replayAll(t, b, tc.channels, tc.after, tc.upTo)
		if len(got) != 0 && !equalSeqs(seqs(got), want(tc.channels, tc.after, tc.upTo)) {
			t.Errorf("Replay(%v, %d, %d) = %v", tc.channels, tc.after, tc.upTo, seqs(got))
		}
	}

	// Events appended after upTo are not delivered even when they match.
	publish(t, b, ev("a", "late", ""))
	got := replayAll(t, b, []string{"a"}, 60, 70)
	if !equalSeqs(seqs(got), want([]string{"a"}, 60, 70)) {
		t.Fatalf("got %v", seqs(got))
	}

	// fn's error stops the replay and is returned as is.
	stop := errors.New("stop")
	n := 0
	err := b.Replay(testCtx(t, 5*time.Second), []string{"a", "b"}, 0, 70, func(*protocol.Event) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if err != stop || n != 3 {
		t.Fatalf("Replay returned %v after %d calls", err, n)
	}

	// Bad channel names are refused.
	if err := b.Replay(testCtx(t, time.Second), []string{"a.>"}, 0, 70, func(*protocol.Event) error { return nil }); !errors.Is(err, protocol.ErrBadChannel) {
		t.Fatalf("Replay bad channel: %v", err)
	}

	// Replay consumers are deleted afterwards.
	si, err := b.js.Stream(testCtx(t, 5*time.Second), b.cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	if n := si.CachedInfo().State.Consumers; n != 0 {
		t.Fatalf("%d consumers left after replays", n)
	}
}

func TestReplayLargeRange(t *testing.T) {
	b := openBus(t, Config{})
	var batch []*protocol.Event
	for i := range 1000 {
		batch = append(batch, ev("x", "", fmt.Sprintf(`%d`, i)))
	}
	publish(t, b, batch...)
	got := replayAll(t, b, []string{"x"}, 17, 983)
	if !equalSeqs(seqs(got), seqRange(18, 983)) {
		t.Fatalf("got %d events (%v...)", len(got), seqs(got)[:min(5, len(got))])
	}
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
	if !equalSeqs(seqs(got), []uint64{1, 4}) || got[1].ID != "ok2" {
		t.Fatalf("got %v", seqs(got))
	}
	if r := replayAll(t, b, []string{"c"}, 0, 4); !equalSeqs(seqs(r), []uint64{1, 4}) {
		t.Fatalf("replay got %v", seqs(r))
	}
	if m := b.Malformed(); m != 4 { // twice each: subscribe and replay
		t.Fatalf("Malformed() = %d, want 4", m)
	}
}

func TestEpochStableAcrossReopen(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t, 30*time.Second)

	b1 := openBus(t, Config{DataDir: dir})
	publish(t, b1, ev("c", "1", ""), ev("c", "2", ""), ev("c", "3", ""))
	i1, err := b1.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i1.Epoch == "" || i1.Epoch != b1.Epoch() || i1.FirstSeq != 1 || i1.LastSeq != 3 {
		t.Fatalf("info %+v, cached epoch %q", i1, b1.Epoch())
	}
	for _, r := range i1.Epoch {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			t.Fatalf("epoch %q is not lowercase alnum", i1.Epoch)
		}
	}
	if _, err := protocol.ParseCursor(protocol.FormatCursor(protocol.Cursor{Seq: 3, Epoch: i1.Epoch})); err != nil {
		t.Fatalf("epoch unusable in a cursor: %v", err)
	}
	if err := b1.Close(); err != nil {
		t.Fatal(err)
	}

	b2 := openBus(t, Config{DataDir: dir})
	i2, err := b2.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i2 != i1 {
		t.Fatalf("after reopen: %+v, want %+v", i2, i1)
	}
	if a := publish(t, b2, ev("c", "4", "")); a[0].Seq != 4 {
		t.Fatalf("seq after reopen = %d, want 4", a[0].Seq)
	}
	if a := publish(t, b2, ev("c", "1", "")); !a[0].Duplicate || a[0].Seq != 1 {
		t.Fatalf("dedup across reopen: %+v", a[0])
	}
	if got := replayAll(t, b2, []string{"c"}, 0, 4); !equalSeqs(seqs(got), seqRange(1, 4)) {
		t.Fatalf("events after reopen: %v", seqs(got))
	}

	// Deleting the stream: Info recreates it with a new epoch.
	if err := b2.js.DeleteStream(ctx, b2.cfg.Stream); err != nil {
		t.Fatal(err)
	}
	i3, err := b2.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if i3.Epoch == i1.Epoch || i3.LastSeq != 0 {
		t.Fatalf("after recreate: %+v (old epoch %q)", i3, i1.Epoch)
	}
	// Publish recreates it too.
	if err := b2.js.DeleteStream(ctx, b2.cfg.Stream); err != nil {
		t.Fatal(err)
	}
	if a := publish(t, b2, ev("c", "x", "")); a[0].Seq != 1 || a[0].Duplicate {
		t.Fatalf("publish after delete: %+v", a[0])
	}
	i4, _ := b2.Info(ctx)
	if i4.Epoch == i3.Epoch || i4.Epoch == i1.Epoch || i4.LastSeq != 1 {
		t.Fatalf("after second recreate: %+v", i4)
	}
	if err := b2.Close(); err != nil {
		t.Fatal(err)
	}

	// And a new bus on the same dir sees the new stream.
	b3 := openBus(t, Config{DataDir: dir})
	if i5, _ := b3.Info(ctx); i5 != i4 {
		t.Fatalf("reopen after recreate: %+v, want %+v", i5, i4)
	}
}

func TestRetentionByBytes(t *testing.T) {
	b := openBus(t, Config{MaxBytes: 8 << 10})
	pad := strings.Repeat("x", 200)
	for i := range 10 {
		var batch []*protocol.Event
		for k := range 10 {
			batch = append(batch, ev("c", fmt.Sprint(i*10+k), fmt.Sprintf(`{"pad":%q}`, pad)))
		}
		publish(t, b, batch...)
	}
	info, err := b.Info(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if info.LastSeq != 100 || info.FirstSeq <= 1 || info.FirstSeq > 100 {
		t.Fatalf("info %+v: old events not dropped", info)
	}
	// Replay from before FirstSeq delivers what exists.
	got := replayAll(t, b, []string{"c"}, 0, 100)
	if !equalSeqs(seqs(got), seqRange(info.FirstSeq, 100)) {
		t.Fatalf("replay got %v, want %d..100", seqs(got), info.FirstSeq)
	}
	// Subscribe from before FirstSeq skips the gap.
	c := newCollector()
	if err := b.Subscribe(testCtx(t, 20*time.Second), 0, c.handle); err != nil {
		t.Fatal(err)
	}
	n := int(100 - info.FirstSeq + 1)
	if got := c.waitN(t, n, 5*time.Second); !equalSeqs(seqs(got), seqRange(info.FirstSeq, 100)) {
		t.Fatalf("subscribe got %v", seqs(got))
	}
}

func TestRetentionByAge(t *testing.T) {
	b := openBus(t, Config{MaxAge: 500 * time.Millisecond})
	if b.cfg.DupWindow != 500*time.Millisecond {
		t.Fatalf("DupWindow %v not clamped to MaxAge", b.cfg.DupWindow)
	}
	publish(t, b, ev("c", "1", ""), ev("c", "2", ""))
	testutil.WaitFor(t, "both events expired", func() bool {
		info, err := b.Info(testCtx(t, 5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		return info.FirstSeq == 3 && info.LastSeq == 2
	})
	if a := publish(t, b, ev("c", "3", "")); a[0].Seq != 3 {
		t.Fatalf("seq after expiry %d", a[0].Seq)
	}
	if got := replayAll(t, b, []string{"c"}, 0, 3); !equalSeqs(seqs(got), []uint64{3}) {
		t.Fatalf("replay after expiry %v", seqs(got))
	}
}

func TestExternalURLSharesStream(t *testing.T) {
	a := openBus(t, Config{ListenAddr: "127.0.0.1:0"})
	url := a.ClientURL()
	if !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("ClientURL = %q", url)
	}
	b := openBus(t, Config{URL: url})
	ctx := testCtx(t, 20*time.Second)
	ia, err := a.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ib, err := b.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ia.Epoch != ib.Epoch || ia.Epoch == "" {
		t.Fatalf("epochs differ: %q vs %q", ia.Epoch, ib.Epoch)
	}

	ca, cb := newCollector(), newCollector()
	if err := a.Subscribe(ctx, 0, ca.handle); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctx, 0, cb.handle); err != nil {
		t.Fatal(err)
	}
	publish(t, a, ev("x.y", "from-a", `{"a":1}`))
	publish(t, b, ev("x.y", "from-b", `{"b":1}`))
	publish(t, a, ev("x.y", "from-b", `{"b":2}`)) // duplicate across instances
	for _, c := range []*collector{ca, cb} {
		got := c.waitN(t, 2, 5*time.Second)
		if !equalSeqs(seqs(got), []uint64{1, 2}) || got[0].ID != "from-a" || got[1].ID != "from-b" {
			t.Fatalf("got %v", seqs(got))
		}
	}
	if got := replayAll(t, b, []string{"x.y"}, 0, 2); len(got) != 2 || string(got[1].Data) != `{"b":1}` {
		t.Fatalf("replay on b: %v", seqs(got))
	}

	// When the server goes away, the client bus reports ErrUnavailable, bounded by ctx.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	_, err = b.Publish(pctx, []*protocol.Event{ev("x.y", "", "")})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Publish with server gone: %v", err)
	}
	t.Logf("Publish with server gone took %v: %v", time.Since(start), err)
	// Once the client knows it is reconnecting, publishes are bounded by ctx.
	time.Sleep(50 * time.Millisecond)
	pctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if _, err := b.Publish(pctx2, []*protocol.Event{ev("x.y", "", "")}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("second Publish with server gone: %v", err)
	}
	if _, err := b.Info(pctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Info with server gone: %v", err)
	}
	start = time.Now()
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	if err := testutil.Receive(t, "Close with the server gone", closed); err != nil {
		t.Fatal(err)
	}
	t.Logf("Close with server gone took %v", time.Since(start))
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

func TestSubscribeSurvivesServerRestart(t *testing.T) {
	dir, addr := t.TempDir(), testutil.FreeAddr(t)
	a := openBus(t, Config{DataDir: dir, ListenAddr: addr})
	b := openBus(t, Config{URL: a.ClientURL()})
	ctx := testCtx(t, 30*time.Second)
	c := newCollector()
	if err := b.Subscribe(ctx, 0, c.handle); err != nil {
		t.Fatal(err)
	}
	publish(t, a, ev("c", "1", ""), ev("c", "2", ""))
	c.waitN(t, 2, 5*time.Second)
	epoch := a.Epoch()

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	a2 := openBus(t, Config{DataDir: dir, ListenAddr: addr})
	if a2.Epoch() != epoch {
		t.Fatalf("epoch changed across restart: %q -> %q", epoch, a2.Epoch())
	}
	publish(t, a2, ev("c", "3", ""), ev("c", "4", ""))
	c.waitN(t, 4, 20*time.Second)
	time.Sleep(100 * time.Millisecond)
	if got := c.snapshot(); !equalSeqs(seqs(got), seqRange(1, 4)) {
		t.Fatalf("got %v, want 1..4 exactly once", seqs(got))
	}
	// The client bus publishes again once reconnected.
	if a := publish(t, b, ev("c", "5", "")); a[0].Seq != 5 {
		t.Fatalf("seq %d", a[0].Seq)
	}
	c.waitN(t, 5, 5*time.Second)
}
