package bustest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
)

// Backend is one Bus implementation under the contract: one stream on one server,
// fresh and empty for every case.
type Backend struct {
	// Open returns a new bus instance on the backend's stream (each call another
	// instance, as another process would open it) and closes it at the end of the
	// test. Options apply to that instance.
	Open func(t testing.TB, o Options) bus.Bus
	// DeleteStream deletes the stream behind the instances' backs, as an operator or
	// lost storage would; the next Info or Publish recreates it with a new epoch.
	DeleteStream func(t testing.TB)
	// Stop stops the server (a crash where the backend can, a clean shutdown
	// otherwise); Start starts it again on the same address and storage. Nil: the
	// cases that need them are skipped.
	Stop, Start func(t testing.TB)
}

// Options are the per-instance settings the contract varies.
type Options struct {
	MaxAge    time.Duration
	MaxBytes  int64
	DupWindow time.Duration
}

// Run runs every case of the contract, each on a backend from newBackend; faults
// tells it that the case stops the server (Backend.Stop and Start must be set, and
// the server must be the case's own).
func Run(t *testing.T, newBackend func(t *testing.T, faults bool) *Backend) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, newBackend(t, c.faults)) })
	}
}

var cases = []struct {
	name   string
	run    func(*testing.T, *Backend)
	faults bool
}{
	{"PublishAcksInOrder", testPublishAcksInOrder, false},
	{"PublishRejectsInvalid", testPublishRejectsInvalid, false},
	{"Dedup", testDedup, false},
	{"DedupWindowEnds", testDedupWindowEnds, false},
	{"InfoEpochAndRange", testInfo, false},
	{"SubscribeFromCursor", testSubscribeFromCursor, false},
	{"SubscribeCursorThenLiveNoGap", testSubscribeNoGap, false},
	{"SubscribeCancel", testSubscribeCancel, false},
	{"ReplayBoundsAndFilter", testReplay, false},
	{"ReplayLargeAndSparse", testReplayLarge, false},
	{"RetentionBytes", testRetentionBytes, false},
	{"RetentionAge", testRetentionAge, false},
	{"EpochChangesOnRecreate", testRecreate, false},
	{"Close", testClose, false},
	{"ManyPublishersSameOrderEverywhere", testConcurrency, false},
	{"InstanceClosedMidStream", testInstanceClosed, false},
	{"ServerDown", testServerDown, true},
	{"ServerRestartUnderLoad", testRestartUnderLoad, true},
}

// Ctx is a context bounded by d, cancelled at the end of the test.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Ev builds an event.
func Ev(ch, id, data string) *protocol.Event {
	e := &protocol.Event{Channel: ch, ID: id, Type: "t"}
	if data != "" {
		e.Data = json.RawMessage(data)
	}
	return e
}

func publish(t testing.TB, b bus.Bus, evs ...*protocol.Event) []bus.Ack {
	t.Helper()
	acks, err := b.Publish(Ctx(t, 20*time.Second), evs)
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if len(acks) != len(evs) {
		t.Fatalf("Publish: %d acks for %d events", len(acks), len(evs))
	}
	return acks
}

func info(t testing.TB, b bus.Bus) bus.Info {
	t.Helper()
	i, err := b.Info(Ctx(t, 10*time.Second))
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	return i
}

// Collector is a Handler that records events and signals arrivals.
type Collector struct {
	mu  sync.Mutex
	evs []*protocol.Event
	ch  chan struct{}
}

// NewCollector returns an empty Collector.
func NewCollector() *Collector { return &Collector{ch: make(chan struct{}, 1)} }

// Handle is the bus.Handler.
func (c *Collector) Handle(e *protocol.Event) {
	c.mu.Lock()
	c.evs = append(c.evs, e)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

// Events returns what arrived so far.
func (c *Collector) Events() []*protocol.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.evs)
}

// WaitN waits until at least n events arrived (failing after d) and returns them all.
func (c *Collector) WaitN(t testing.TB, n int, d time.Duration) []*protocol.Event {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		if got := c.Events(); len(got) >= n {
			return got
		}
		select {
		case <-c.ch:
		case <-deadline.C:
			t.Fatalf("timeout: got %d events, want %d", len(c.Events()), n)
		}
	}
}

// WaitSeq waits until an event with seq >= s arrived.
func (c *Collector) WaitSeq(t testing.TB, s uint64, d time.Duration) []*protocol.Event {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		got := c.Events()
		if len(got) > 0 && got[len(got)-1].Seq >= s {
			return got
		}
		select {
		case <-c.ch:
		case <-deadline.C:
			last := uint64(0)
			if len(got) > 0 {
				last = got[len(got)-1].Seq
			}
			t.Fatalf("timeout: last seq %d, want %d", last, s)
		}
	}
}

func subscribe(t testing.TB, b bus.Bus, after uint64) *Collector {
	t.Helper()
	c := NewCollector()
	if err := b.Subscribe(Ctx(t, 5*time.Minute), after, c.Handle); err != nil {
		t.Fatalf("Subscribe(%d): %v", after, err)
	}
	return c
}

// Seqs returns the sequences of evs.
func Seqs(evs []*protocol.Event) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.Seq
	}
	return out
}

// SeqRange is from, from+1, ..., to.
func SeqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func replayAll(t testing.TB, b bus.Bus, channels []string, after, upTo uint64) []*protocol.Event {
	t.Helper()
	var out []*protocol.Event
	err := b.Replay(Ctx(t, 20*time.Second), channels, after, upTo, func(e *protocol.Event) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		t.Fatalf("Replay(%v, %d, %d): %v", channels, after, upTo, err)
	}
	return out
}

func testPublishAcksInOrder(t *testing.T, be *Backend) {
	b := be.Open(t, Options{})
	c := subscribe(t, b, 0)
	var sent []*protocol.Event
	before := time.Now().UnixMilli()
	for i := range 4 {
		var batch []*protocol.Event
		for k := range 25 {
			n := i*25 + k
			e := Ev(fmt.Sprintf("room.%d", n%3), "", fmt.Sprintf(`{"n": %d, "s":"x"}`, n))
			if n%2 == 0 {
				e.ID = fmt.Sprintf("given-%d", n)
			}
			batch = append(batch, e)
		}
		acks := publish(t, b, batch...)
		for k, a := range acks {
			n := i*25 + k
			if a.Seq != uint64(n+1) || a.Duplicate || a.ID == "" || a.ID != batch[k].ID {
				t.Fatalf("ack %d = %+v (event ID %q), want seq %d", n, a, batch[k].ID, n+1)
			}
			if batch[k].TS < before || batch[k].TS > time.Now().UnixMilli() {
				t.Fatalf("event %d TS %d not set to now", n, batch[k].TS)
			}
		}
		sent = append(sent, batch...)
	}
	if sent[0].ID != "given-0" || strings.HasPrefix(sent[1].ID, "given") {
		t.Fatalf("IDs: %q %q", sent[0].ID, sent[1].ID)
	}
	got := c.WaitN(t, len(sent), 20*time.Second)
	for i, g := range got {
		w := sent[i]
		if g.Seq != uint64(i+1) || g.ID != w.ID || g.Channel != w.Channel || g.Type != w.Type ||
			string(g.Data) != string(w.Data) || g.TS != w.TS {
			t.Fatalf("event %d: got %+v (data %s), want %+v (data %s) with seq %d", i, g, g.Data, w, w.Data, i+1)
		}
	}
	// Replay returns the same events: the IDs the bus generated, the TS it set.
	for i, g := range replayAll(t, b, []string{"room.0", "room.1", "room.2"}, 0, uint64(len(sent))) {
		if w := sent[i]; g.Seq != uint64(i+1) || g.ID != w.ID || g.TS != w.TS || string(g.Data) != string(w.Data) {
			t.Fatalf("replayed event %d: got %+v (data %s), want %+v (data %s)", i, g, g.Data, w, w.Data)
		}
	}
	// An empty publish is a no-op.
	if acks, err := b.Publish(Ctx(t, 5*time.Second), nil); err != nil || len(acks) != 0 {
		t.Fatalf("empty publish: %v %v", acks, err)
	}
}

func testPublishRejectsInvalid(t *testing.T, be *Backend) {
	b := be.Open(t, Options{})
	ctx := Ctx(t, 10*time.Second)
	for _, tc := range []struct {
		ev   *protocol.Event
		want error
	}{
		{Ev("a b", "", ""), protocol.ErrBadChannel},
		{Ev("a.*", "", ""), protocol.ErrBadChannel},
		{Ev("a.>", "", ""), protocol.ErrBadChannel},
		{Ev("", "", ""), protocol.ErrBadChannel},
		{Ev("ok", "bad id", ""), protocol.ErrBadEvent},
		{Ev("ok", "", "{not json"), protocol.ErrBadEvent},
		{nil, protocol.ErrBadEvent},
	} {
		if _, err := b.Publish(ctx, []*protocol.Event{Ev("fine", "", ""), tc.ev}); !errors.Is(err, tc.want) {
			t.Errorf("Publish(%+v) = %v, want %v", tc.ev, err, tc.want)
		}
	}
	if i := info(t, b); i.LastSeq != 0 {
		t.Fatalf("a rejected batch appended events: LastSeq %d", i.LastSeq)
	}
	// A long channel name (the engine allows 128 bytes by default) is fine.
	long := strings.Repeat("c", 1000)
	publish(t, b, Ev(long, "", ""))
	if got := replayAll(t, b, []string{long}, 0, 1); len(got) != 1 || got[0].Channel != long {
		t.Fatalf("long channel replay: %v", Seqs(got))
	}
}

func testDedup(t *testing.T, be *Backend) {
	b := be.Open(t, Options{})
	other := be.Open(t, Options{})
	a1 := publish(t, b, Ev("c", "dup-1", `1`), Ev("c", "other", `2`))
	a2 := publish(t, b, Ev("c", "dup-1", `3`))
	if a1[0].Duplicate || a1[0].Seq != 1 || a1[1].Seq != 2 {
		t.Fatalf("first acks: %+v", a1)
	}
	if !a2[0].Duplicate || a2[0].Seq != 1 || a2[0].ID != "dup-1" {
		t.Fatalf("duplicate ack: %+v, want Duplicate with seq 1", a2[0])
	}
	// Inside one batch.
	a3 := publish(t, b, Ev("c", "dup-2", ``), Ev("c", "dup-2", ``))
	if a3[0].Duplicate || a3[0].Seq != 3 || !a3[1].Duplicate || a3[1].Seq != 3 {
		t.Fatalf("in-batch duplicate acks: %+v", a3)
	}
	// Through another instance.
	if a := publish(t, other, Ev("c", "other", `9`)); !a[0].Duplicate || a[0].Seq != 2 {
		t.Fatalf("duplicate through another instance: %+v", a[0])
	}
	// Concurrent publishes of one ID append it once.
	var wg sync.WaitGroup
	seqs := make([]uint64, 8)
	for i := range 8 {
		in := b
		if i%2 == 1 {
			in = other
		}
		wg.Go(func() {
			acks, err := in.Publish(Ctx(t, 20*time.Second), []*protocol.Event{Ev("c", "race", ``)})
			if err != nil {
				t.Errorf("concurrent publish: %v", err)
				return
			}
			seqs[i] = acks[0].Seq
		})
	}
	wg.Wait()
	for _, s := range seqs {
		if s != seqs[0] {
			t.Fatalf("one ID published concurrently got seqs %v", seqs)
		}
	}
	if i := info(t, b); i.LastSeq != 4 {
		t.Fatalf("LastSeq = %d, want 4", i.LastSeq)
	}
	if got := replayAll(t, b, []string{"c"}, 0, 4); len(got) != 4 || string(got[0].Data) != `1` || string(got[1].Data) != `2` {
		t.Fatalf("stored events %v, want the originals", Seqs(got))
	}
}

func testDedupWindowEnds(t *testing.T, be *Backend) {
	b := be.Open(t, Options{DupWindow: 200 * time.Millisecond})
	if a := publish(t, b, Ev("c", "x", `1`)); a[0].Seq != 1 {
		t.Fatalf("ack %+v", a[0])
	}
	if a := publish(t, b, Ev("c", "x", `1`)); !a[0].Duplicate {
		t.Fatalf("inside the window: %+v", a[0])
	}
	var last bus.Ack
	testutil.WaitFor(t, "the ID to be appended again after the window", func() bool {
		last = publish(t, b, Ev("c", "x", `2`))[0]
		return !last.Duplicate
	})
	if last.Seq != 2 {
		t.Fatalf("appended again as %+v, want seq 2", last)
	}
}

func testInfo(t *testing.T, be *Backend) {
	b := be.Open(t, Options{})
	i0 := info(t, b)
	if i0.Epoch == "" || i0.LastSeq != 0 || (i0.FirstSeq != 0 && i0.FirstSeq != 1) {
		t.Fatalf("fresh stream: %+v", i0)
	}
	for _, r := range i0.Epoch {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			t.Fatalf("epoch %q is not lowercase alphanumeric", i0.Epoch)
		}
	}
	if _, err := protocol.ParseCursor(protocol.FormatCursor(protocol.Cursor{Seq: 3, Epoch: i0.Epoch})); err != nil {
		t.Fatalf("epoch unusable in a cursor: %v", err)
	}
	publish(t, b, Ev("c", "1", ""), Ev("d", "2", ""), Ev("c", "3", ""))
	i1 := info(t, b)
	if i1.Epoch != i0.Epoch || i1.FirstSeq != 1 || i1.LastSeq != 3 {
		t.Fatalf("after 3 events: %+v", i1)
	}
	// Another instance sees the same stream, and the same stream after a reopen.
	if i2 := info(t, be.Open(t, Options{})); i2 != i1 {
		t.Fatalf("other instance: %+v, want %+v", i2, i1)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2 := be.Open(t, Options{})
	if i3 := info(t, b2); i3 != i1 {
		t.Fatalf("reopened: %+v, want %+v", i3, i1)
	}
	if a := publish(t, b2, Ev("c", "4", "")); a[0].Seq != 4 {
		t.Fatalf("seq after reopen = %d", a[0].Seq)
	}
	if a := publish(t, b2, Ev("c", "1", "")); !a[0].Duplicate || a[0].Seq != 1 {
		t.Fatalf("dedup across reopen: %+v", a[0])
	}
}

func testSubscribeFromCursor(t *testing.T, be *Backend) {
	b := be.Open(t, Options{})
	for i := range 10 {
		publish(t, b, Ev("c", fmt.Sprint("a", i), ""))
	}
	c := subscribe(t, b, 6)
	if got := c.WaitN(t, 4, 10*time.Second); !slices.Equal(Seqs(got), SeqRange(7, 10)) {
		t.Fatalf("got seqs %v, want 7..10", Seqs(got))
	}
	publish(t, b, Ev("c", "b1", ""), Ev("d", "b2", ""), Ev("c", "b3", ""))
	if got := c.WaitN(t, 7, 10*time.Second); !slices.Equal(Seqs(got), SeqRange(7, 13)) {
		t.Fatalf("got seqs %v, want 7..13", Seqs(got))
	}
	// Ahead of the head: waits for its sequence. At the head: only new events.
	ahead := subscribe(t, b, 14)
	head := subscribe(t, b, info(t, b).LastSeq)
	publish(t, b, Ev("c", "new", ""))
	if got := head.WaitN(t, 1, 10*time.Second); got[0].Seq != 14 || got[0].ID != "new" {
		t.Fatalf("head subscription got %v", Seqs(got))
	}
	publish(t, b, Ev("c", "newer", ""))
	if got := ahead.WaitN(t, 1, 10*time.Second); got[0].Seq != 15 {
		t.Fatalf("subscription ahead of the head got %v", Seqs(got))
	}
	// Exactly once: nothing beyond what was published arrives.
	if got := head.WaitN(t, 2, 10*time.Second); !slices.Equal(Seqs(got), []uint64{14, 15}) {
		t.Fatalf("head subscription got %v", Seqs(got))
	}
	if got := c.WaitSeq(t, 15, 10*time.Second); !slices.Equal(Seqs(got), SeqRange(7, 15)) {
		t.Fatalf("got seqs %v, want 7..15 once each", Seqs(got))
	}
}

// testSubscribeNoGap subscribes from cursors while publishers are busy: each
// subscription gets every event after its cursor once, in order, across the switch
// from stored to live events.
func testSubscribeNoGap(t *testing.T, be *Backend) {
	b := be.Open(t, Options{})
	other := be.Open(t, Options{})
	const batches, per = 60, 5
	total := uint64(batches * per)
	done := make(chan error, 1)
	go func() {
		for i := range batches {
			var evs []*protocol.Event
			for k := range per {
				evs = append(evs, Ev("c", fmt.Sprintf("e%d-%d", i, k), ""))
			}
			if _, err := other.Publish(Ctx(t, 20*time.Second), evs); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	var subs []*Collector
	var afters []uint64
	for len(subs) < 5 {
		i := info(t, b)
		subs, afters = append(subs, subscribe(t, b, i.LastSeq/2)), append(afters, i.LastSeq/2)
		time.Sleep(5 * time.Millisecond)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for k, c := range subs {
		if got := c.WaitSeq(t, total, 20*time.Second); !slices.Equal(Seqs(got), SeqRange(afters[k]+1, total)) {
			t.Fatalf("subscription after %d got %d events (%v...), want %d..%d once each",
				afters[k], len(got), Seqs(got)[:min(5, len(got))], afters[k]+1, total)
		}
	}
}

func testSubscribeCancel(t *testing.T, be *Backend) {
	b := be.Open(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	c := NewCollector()
	if err := b.Subscribe(ctx, 0, c.Handle); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctx, 0, nil); err == nil {
		t.Fatal("Subscribe with a nil handler succeeded")
	}
	publish(t, b, Ev("c", "1", ""))
	c.WaitN(t, 1, 10*time.Second)
	cancel()
	// A second subscription proves later events are delivered; the cancelled one must
	// not get them.
	c2 := subscribe(t, b, 1)
	time.Sleep(50 * time.Millisecond)
	publish(t, b, Ev("c", "2", ""))
	c2.WaitN(t, 1, 10*time.Second)
	time.Sleep(50 * time.Millisecond)
	if n := len(c.Events()); n != 1 {
		t.Fatalf("handler called after cancel: %d events", n)
	}
}

func testReplay(t *testing.T, be *Backend) {
	b := be.Open(t, Options{})
	chans := []string{"a", "b", "b.c", "b.c.d", "user:42", "org=1@x", "a-b_c"}
	var all []*protocol.Event
	for i := range 70 {
		all = append(all, Ev(chans[i%len(chans)], fmt.Sprint("e", i), fmt.Sprintf(`{"i":%d}`, i)))
	}
	acks := publish(t, b, all...)
	for i, a := range acks {
		all[i].Seq = a.Seq
	}
	want := func(channels []string, after, upTo uint64) []uint64 {
		var out []uint64
		for _, e := range all {
			if slices.Contains(channels, e.Channel) && e.Seq > after && e.Seq <= upTo {
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
		{[]string{"nobody"}, 0, 70},
		{[]string{"a"}, 70, 70},
		{[]string{"a"}, 70, 100},
		{[]string{"a"}, 90, 100}, // after beyond the head
		{[]string{"a"}, 50, 40},
		{nil, 0, 70},
		{[]string{"a"}, 64, 70},
	} {
		got := replayAll(t, b, tc.channels, tc.after, tc.upTo)
		if w := want(tc.channels, tc.after, tc.upTo); !slices.Equal(Seqs(got), w) {
			t.Errorf("Replay(%v, %d, %d) = %v, want %v", tc.channels, tc.after, tc.upTo, Seqs(got), w)
		}
		for _, g := range got {
			src := all[g.Seq-1]
			if g.ID != src.ID || g.Channel != src.Channel || string(g.Data) != string(src.Data) || g.TS != src.TS || g.Type != src.Type {
				t.Fatalf("replayed %+v, want %+v", g, src)
			}
		}
	}
	// Events appended after upTo are not delivered even when they match.
	publish(t, b, Ev("a", "late", ""))
	if got := replayAll(t, b, []string{"a"}, 60, 70); !slices.Equal(Seqs(got), want([]string{"a"}, 60, 70)) {
		t.Fatalf("got %v", Seqs(got))
	}
	// fn's error stops the replay and is returned as is.
	stop := errors.New("stop")
	n := 0
	err := b.Replay(Ctx(t, 10*time.Second), []string{"a", "b"}, 0, 70, func(*protocol.Event) error {
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
	if err := b.Replay(Ctx(t, 5*time.Second), []string{"a.>"}, 0, 70, func(*protocol.Event) error { return nil }); !errors.Is(err, protocol.ErrBadChannel) {
		t.Fatalf("Replay bad channel: %v", err)
	}
}

func testReplayLarge(t *testing.T, be *Backend) {
	b := be.Open(t, Options{})
	const n = 3000
	var rare []uint64
	for start := 0; start < n; start += 500 {
		var batch []*protocol.Event
		for i := start; i < start+500; i++ {
			ch := "x"
			if i%997 == 0 {
				ch = "rare"
			}
			batch = append(batch, Ev(ch, "", fmt.Sprintf(`%d`, i)))
		}
		for k, a := range publish(t, b, batch...) {
			if batch[k].Channel == "rare" {
				rare = append(rare, a.Seq)
			}
		}
	}
	var wantX []uint64
	for s := uint64(18); s <= n-17; s++ {
		if !slices.Contains(rare, s) {
			wantX = append(wantX, s)
		}
	}
	if got := replayAll(t, b, []string{"x"}, 17, n-17); !slices.Equal(Seqs(got), wantX) {
		t.Fatalf("got %d events, want %d", len(got), len(wantX))
	}
	if got := replayAll(t, b, []string{"rare"}, 0, n); !slices.Equal(Seqs(got), rare) {
		t.Fatalf("sparse channel: got %v, want %v", Seqs(got), rare)
	}
	if got := replayAll(t, b, []string{"x", "rare"}, 0, n); !slices.Equal(Seqs(got), SeqRange(1, n)) {
		t.Fatalf("both channels: got %d events", len(got))
	}
}

func testRetentionBytes(t *testing.T, be *Backend) {
	b := be.Open(t, Options{MaxBytes: 8 << 10})
	pad := strings.Repeat("x", 200)
	for i := range 10 {
		var batch []*protocol.Event
		for k := range 10 {
			batch = append(batch, Ev("c", fmt.Sprint(i*10+k), fmt.Sprintf(`{"pad":%q}`, pad)))
		}
		publish(t, b, batch...)
	}
	var i bus.Info
	testutil.WaitFor(t, "old events to be dropped", func() bool {
		i = info(t, b)
		return i.FirstSeq > 1
	})
	if i.LastSeq != 100 || i.FirstSeq > 90 || i.FirstSeq < 40 {
		t.Fatalf("info %+v: want about 8 KiB of 100 events of ~250 B kept", i)
	}
	// Replay from before FirstSeq delivers what exists; Subscribe skips the gap.
	if got := replayAll(t, b, []string{"c"}, 0, 100); !slices.Equal(Seqs(got), SeqRange(i.FirstSeq, 100)) {
		t.Fatalf("replay got %v, want %d..100", Seqs(got), i.FirstSeq)
	}
	c := subscribe(t, b, 0)
	if got := c.WaitSeq(t, 100, 10*time.Second); !slices.Equal(Seqs(got), SeqRange(i.FirstSeq, 100)) {
		t.Fatalf("subscribe got %v", Seqs(got))
	}
}

func testRetentionAge(t *testing.T, be *Backend) {
	b := be.Open(t, Options{MaxAge: 500 * time.Millisecond})
	publish(t, b, Ev("c", "1", ""), Ev("c", "2", ""))
	testutil.WaitFor(t, "events to expire", func() bool {
		i := info(t, b)
		return i.FirstSeq == 3 && i.LastSeq == 2
	})
	if a := publish(t, b, Ev("c", "3", "")); a[0].Seq != 3 {
		t.Fatalf("seq after expiry %d", a[0].Seq)
	}
	if got := replayAll(t, b, []string{"c"}, 0, 3); !slices.Equal(Seqs(got), []uint64{3}) {
		t.Fatalf("replay after expiry %v", Seqs(got))
	}
}

func testRecreate(t *testing.T, be *Backend) {
	b := be.Open(t, Options{})
	other := be.Open(t, Options{})
	publish(t, b, Ev("c", "1", ""), Ev("c", "2", ""))
	i1 := info(t, b)
	be.DeleteStream(t)
	i2 := info(t, b)
	if i2.Epoch == i1.Epoch || i2.LastSeq != 0 {
		t.Fatalf("after recreate: %+v (old epoch %q)", i2, i1.Epoch)
	}
	if i := info(t, other); i.Epoch != i2.Epoch {
		t.Fatalf("other instance sees epoch %q, want %q", i.Epoch, i2.Epoch)
	}
	// Publish recreates it too; the old IDs are forgotten with the old stream.
	be.DeleteStream(t)
	if a := publish(t, other, Ev("c", "1", "")); a[0].Seq != 1 || a[0].Duplicate {
		t.Fatalf("publish after delete: %+v", a[0])
	}
	i3 := info(t, b)
	if i3.Epoch == i2.Epoch || i3.Epoch == i1.Epoch || i3.LastSeq != 1 {
		t.Fatalf("after second recreate: %+v", i3)
	}
	if got := replayAll(t, b, []string{"c"}, 0, 10); !slices.Equal(Seqs(got), []uint64{1}) {
		t.Fatalf("new stream holds %v", Seqs(got))
	}
}

func testClose(t *testing.T, be *Backend) {
	b := be.Open(t, Options{})
	c := NewCollector()
	if err := b.Subscribe(context.Background(), 0, c.Handle); err != nil {
		t.Fatal(err)
	}
	publish(t, b, Ev("c", "1", ""))
	c.WaitN(t, 1, 10*time.Second)
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	if err := testutil.Receive(t, "Close with a subscription running", closed); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
	n := len(c.Events())
	ctx := Ctx(t, 5*time.Second)
	if _, err := b.Publish(ctx, []*protocol.Event{Ev("c", "", "")}); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if err := b.Subscribe(ctx, 0, c.Handle); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	if err := b.Replay(ctx, []string{"c"}, 0, 1, func(*protocol.Event) error { return nil }); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("Replay after Close: %v", err)
	}
	if _, err := b.Info(ctx); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("Info after Close: %v", err)
	}
	// Other instances go on; the closed one's subscription delivers nothing more.
	publish(t, be.Open(t, Options{}), Ev("c", "2", ""))
	time.Sleep(100 * time.Millisecond)
	if len(c.Events()) != n {
		t.Fatal("a closed bus delivered an event")
	}
}

// testConcurrency: publishers on three instances at once; subscribers on each see
// every event once, in one order, with the sequence each publisher was acked.
func testConcurrency(t *testing.T, be *Backend) {
	ins := []bus.Bus{be.Open(t, Options{}), be.Open(t, Options{}), be.Open(t, Options{})}
	var subs []*Collector
	for _, b := range ins {
		subs = append(subs, subscribe(t, b, 0), subscribe(t, b, 0))
	}
	const publishers, batches, per = 9, 20, 5
	acked := make(map[string]uint64)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for p := range publishers {
		b := ins[p%len(ins)]
		wg.Go(func() {
			for i := range batches {
				var evs []*protocol.Event
				for k := range per {
					evs = append(evs, Ev(fmt.Sprintf("ch%d", k%3), fmt.Sprintf("p%d-%d-%d", p, i, k), fmt.Sprintf(`{"p":%d}`, p)))
				}
				acks, err := b.Publish(Ctx(t, 30*time.Second), evs)
				if err != nil {
					t.Errorf("publisher %d: %v", p, err)
					return
				}
				mu.Lock()
				for _, a := range acks {
					acked[a.ID] = a.Seq
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	total := uint64(publishers * batches * per)
	if len(acked) != int(total) {
		t.Fatalf("%d distinct acks, want %d", len(acked), total)
	}
	var first []*protocol.Event
	for k, c := range subs {
		got := c.WaitSeq(t, total, 30*time.Second)
		if !slices.Equal(Seqs(got), SeqRange(1, total)) {
			t.Fatalf("subscriber %d got %d events, not 1..%d once each", k, len(got), total)
		}
		for _, e := range got {
			if acked[e.ID] != e.Seq {
				t.Fatalf("subscriber %d: %s at seq %d, acked as %d", k, e.ID, e.Seq, acked[e.ID])
			}
		}
		if k == 0 {
			first = got
			continue
		}
		for i := range got {
			if got[i].ID != first[i].ID {
				t.Fatalf("subscribers disagree at seq %d: %s vs %s", i+1, got[i].ID, first[i].ID)
			}
		}
	}
}

// testInstanceClosedMidStream: an instance goes away while events flow; its
// subscriber resumes on another instance from its cursor and misses nothing.
func testInstanceClosed(t *testing.T, be *Backend) {
	a, b, c := be.Open(t, Options{}), be.Open(t, Options{}), be.Open(t, Options{})
	onC := subscribe(t, c, 0)
	const n = 400
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i += 4 {
			in := a
			if i%8 == 4 {
				in = b
			}
			var evs []*protocol.Event
			for k := i; k < i+4; k++ {
				evs = append(evs, Ev("c", fmt.Sprint("e", k), ""))
			}
			if _, err := in.Publish(Ctx(t, 20*time.Second), evs); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	onC.WaitN(t, 40, 20*time.Second)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := onC.Events()
	cursor := got[len(got)-1].Seq
	resumed := subscribe(t, a, cursor)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	all := append(got, resumed.WaitSeq(t, n, 20*time.Second)...)
	if !slices.Equal(Seqs(all), SeqRange(1, n)) {
		t.Fatalf("before and after the resume: %d events, not 1..%d once each", len(all), n)
	}
}

func testServerDown(t *testing.T, be *Backend) {
	if be.Stop == nil {
		t.Skip("backend cannot stop its server")
	}
	b, other := be.Open(t, Options{}), be.Open(t, Options{})
	c := subscribe(t, b, 0)
	onOther := subscribe(t, other, 0)
	publish(t, b, Ev("c", "1", ""), Ev("c", "2", ""))
	c.WaitN(t, 2, 10*time.Second)
	onOther.WaitN(t, 2, 10*time.Second)
	epoch := info(t, b).Epoch
	be.Stop(t)
	for _, op := range []struct {
		name string
		call func(context.Context) error
	}{
		{"Publish", func(ctx context.Context) error {
			_, err := b.Publish(ctx, []*protocol.Event{Ev("c", "down", "")})
			return err
		}},
		{"Info", func(ctx context.Context) error { _, err := b.Info(ctx); return err }},
		{"Replay", func(ctx context.Context) error {
			return b.Replay(ctx, []string{"c"}, 0, 2, func(*protocol.Event) error { return nil })
		}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := op.call(ctx)
		cancel()
		if !errors.Is(err, bus.ErrUnavailable) {
			t.Errorf("%s with the server down: %v, want ErrUnavailable", op.name, err)
		}
	}
	// A subscribed instance closes with the server down.
	closed := make(chan error, 1)
	go func() { closed <- other.Close() }()
	if err := testutil.Receive(t, "Close with the server down", closed); err != nil {
		t.Fatal(err)
	}
	be.Start(t)
	// The subscription resumes from its position; publishing works again, on the
	// same stream.
	var acks []bus.Ack
	testutil.WaitFor(t, "publishing after the restart", func() bool {
		var err error
		acks, err = b.Publish(Ctx(t, 2*time.Second), []*protocol.Event{Ev("c", "3", "")})
		return err == nil
	})
	if got := c.WaitSeq(t, acks[0].Seq, 30*time.Second); !slices.Equal(Seqs(got), SeqRange(1, acks[0].Seq)) {
		t.Fatalf("subscription across the restart got %v", Seqs(got))
	}
	if i := info(t, b); i.Epoch != epoch || i.LastSeq != acks[0].Seq {
		t.Fatalf("after the restart: %+v, want epoch %q", i, epoch)
	}
}

// testRestartUnderLoad: the server stops while publishers keep publishing (and
// retrying with the same IDs); every acknowledged event is stored with its acked
// sequence and reaches the subscriber exactly once, in order.
func testRestartUnderLoad(t *testing.T, be *Backend) {
	if be.Stop == nil {
		t.Skip("backend cannot stop its server")
	}
	a, b := be.Open(t, Options{}), be.Open(t, Options{})
	sub := subscribe(t, a, 0)
	var mu sync.Mutex
	acked := map[string]uint64{}
	var sent sync.WaitGroup
	stop := make(chan struct{})
	for p := range 4 {
		in := []bus.Bus{a, b}[p%2]
		sent.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				evs := []*protocol.Event{Ev("c", fmt.Sprintf("p%d-%d-a", p, i), ""), Ev("c", fmt.Sprintf("p%d-%d-b", p, i), "")}
				for attempt := 0; ; attempt++ { // retry with the same IDs until acked
					acks, err := in.Publish(Ctx(t, 2*time.Second), evs)
					if err == nil {
						mu.Lock()
						for _, ak := range acks {
							acked[ak.ID] = ak.Seq
						}
						mu.Unlock()
						break
					}
					if !errors.Is(err, bus.ErrUnavailable) {
						t.Errorf("publish: %v", err)
						return
					}
					if attempt > 200 {
						t.Errorf("publish never recovered: %v", err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
	ackedN := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testutil.WaitFor(t, "events before the stop", func() bool { return ackedN() >= 100 })
	be.Stop(t)
	time.Sleep(300 * time.Millisecond)
	be.Start(t)
	before := ackedN()
	testutil.WaitFor(t, "events after the restart", func() bool { return ackedN() >= before+100 })
	close(stop)
	sent.Wait()
	if t.Failed() {
		return
	}
	var last uint64
	for _, s := range acked {
		last = max(last, s)
	}
	stored := map[string]uint64{}
	for _, e := range replayAll(t, a, []string{"c"}, 0, last) {
		stored[e.ID] = e.Seq
	}
	for id, s := range acked {
		if stored[id] != s {
			t.Fatalf("acked %s at seq %d, stored at %d", id, s, stored[id])
		}
	}
	got := sub.WaitSeq(t, last, 60*time.Second)
	for i := 1; i < len(got); i++ {
		if got[i].Seq <= got[i-1].Seq {
			t.Fatalf("subscriber got seq %d after %d", got[i].Seq, got[i-1].Seq)
		}
	}
	seen := map[string]bool{}
	for _, e := range got {
		seen[e.ID] = true
	}
	for id := range acked {
		if !seen[id] {
			t.Fatalf("acked event %s never delivered", id)
		}
	}
	t.Logf("%d events acked across the restart (%d before it), last seq %d", len(acked), before, last)
}
