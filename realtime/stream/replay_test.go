package stream

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// A cursor inside the window is recovered from memory; one older than the window from
// the bus; both with no gap and no duplicate, and live events follow.
func TestRecoveryMemoryAndBus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		window int
		source string
	}{
		{"memory", 1000, "memory"},
		{"bus", 10, "bus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, Config{WindowEvents: tc.window}, bus.Config{})
			ctx := testutil.Context(t)
			c := env.dial(ctx, nil)
			subscribe(t, ctx, c, nil, "r")
			env.publishN("r", 0, 20)
			evs, _ := readEvents(t, ctx, c, 20)
			cur := protocol.Cursor{Seq: evs[9].Seq, Epoch: c.Welcome.Epoch} // processed 0..9
			c.Close()

			// Missed: 10..19 plus 200 more, interleaved with another channel.
			var last uint64
			for i := range 10 {
				env.publishN("r", 20+i*20, 20)
				last = env.publishN("other", i*5, 5)[4].Seq
			}
			env.waitDispatched(last) // publish returns at the bus ack; dispatch follows
			c2 := env.dial(ctx, nil)
			f := subscribe(t, ctx, c2, &cur, "r")
			if f.Recovery == nil || !f.Recovery.Recovered || f.Recovery.Source != tc.source {
				t.Fatalf("recovery %+v, want recovered from %s", f.Recovery, tc.source)
			}
			env.publishN("r", 220, 5) // live after the replay
			got, _ := readEvents(t, ctx, c2, 215)
			checkSequence(t, got, "r", 10, 215)
			s := env.eng.Snapshot()
			if s.Recoveries[tc.source] != 1 || s.EventsReplayed != 210 {
				t.Errorf("recoveries %v replayed %d", s.Recoveries, s.EventsReplayed)
			}
		})
	}
}

// A replay and live events racing each other: events published while many clients
// resume are delivered exactly once each. The publisher stops at maxEvents: the
// clients read only once all are connected, and what they have not read must fit
// their sockets' buffers (beyond, a client falls out of the 50-event window and is
// closed as a slow consumer, as it should be).
func TestRecoveryRacesLive(t *testing.T) {
	const maxEvents = 400
	env := newEnv(t, Config{WindowEvents: 50}, bus.Config{})
	ctx := testutil.ContextWithin(t, 5*time.Minute) // a guard against a hung test, not a speed budget
	env.publishN("race", 0, 100)
	info, _ := env.bus.Info(ctx)
	cur := protocol.Cursor{Seq: 0, Epoch: info.Epoch}
	stop := make(chan struct{})
	pubDone := make(chan int)
	go func() {
		n := 100
		for {
			select {
			case <-stop:
				pubDone <- n
				return
			default:
			}
			if n >= maxEvents {
				<-stop
				pubDone <- n
				return
			}
			if err := env.tryPublishN("race", n, 10); err != nil {
				t.Error(err)
				pubDone <- n
				return
			}
			n += 10
		}
	}()
	const clients = 20
	conns := make([]*rtclient.Conn, clients)
	for i := range clients {
		conns[i] = env.dial(ctx, nil)
		f := subscribe(t, ctx, conns[i], &cur, "race")
		if !f.Recovery.Recovered {
			t.Fatalf("client %d not recovered: %+v", i, f.Recovery)
		}
	}
	close(stop)
	total := <-pubDone
	for i, c := range conns {
		got, _ := readEvents(t, ctx, c, total)
		checkSequence(t, got, "race", 0, total)
		_ = i
	}
}

// Cursors that cannot be honoured get an explicit "not recovered", and the subscription
// is live from now.
func TestNotRecovered(t *testing.T) {
	testNotRecovered(t, newEnv(t, Config{WindowEvents: 5}, bus.Config{MaxBytes: 8 << 10}))
}

// testNotRecovered runs TestNotRecovered on env (WindowEvents 5, a bus keeping about
// 8 KiB), for each bus.
func testNotRecovered(t *testing.T, env *testEnv) {
	ctx := testutil.Context(t)
	info, _ := env.bus.Info(ctx)
	// Fill past retention: ~2 KB per stored event, 8 KiB kept. Under load the engine may
	// read only the survivors; the gap must not be mistaken for a memory hit.
	for i := range 10 {
		env.publish(&protocol.Event{ID: fmt.Sprintf("fill-%d", i), Channel: "old",
			Data: []byte(`"` + strings.Repeat("x", 2000) + `"`)})
	}
	// JetStream drops the oldest events as it appends; Postgres a moment later.
	var after bus.Info
	testutil.WaitFor(t, "retention to drop the oldest events", func() bool {
		after, _ = env.bus.Info(ctx)
		return after.FirstSeq > 2
	})
	// The fill events reach the engine asynchronously: wait for them, or a late one is
	// delivered live to the subscriptions below (seen under CPU load).
	testutil.WaitFor(t, "fill events dispatched", func() bool { return env.eng.Snapshot().HeadSeq >= after.LastSeq })
	cases := []struct {
		name   string
		cur    protocol.Cursor
		reason string
	}{
		{"other epoch", protocol.Cursor{Seq: 3, Epoch: "zzz"}, protocol.ReasonEpochMismatch},
		{"past retention", protocol.Cursor{Seq: 1, Epoch: info.Epoch}, protocol.ReasonTooOld},
		{"ahead of stream", protocol.Cursor{Seq: 10_000, Epoch: info.Epoch}, protocol.ReasonFuture},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := env.dial(ctx, nil)
			f := subscribe(t, ctx, c, &tc.cur, "old")
			if f.Recovery == nil || f.Recovery.Recovered || f.Recovery.Reason != tc.reason {
				t.Fatalf("recovery %+v, want not recovered: %s", f.Recovery, tc.reason)
			}
			ev := env.publish(&protocol.Event{ID: fmt.Sprintf("live-%d", i), Channel: "old"})
			got, _ := readEvents(t, ctx, c, 1)
			if got[0].Seq != ev[0].Seq {
				t.Fatalf("live event seq %d, want %d", got[0].Seq, ev[0].Seq)
			}
		})
	}
	// A cursor on a connection that already has live subscriptions is refused.
	c := env.dial(ctx, nil)
	subscribe(t, ctx, c, nil, "live")
	cur := protocol.Cursor{Seq: after.LastSeq, Epoch: info.Epoch}
	f := subscribe(t, ctx, c, &cur, "old")
	if f.Recovery == nil || f.Recovery.Recovered || f.Recovery.Reason != protocol.ReasonHasSubs {
		t.Fatalf("recovery %+v, want %s", f.Recovery, protocol.ReasonHasSubs)
	}
}

// A client that stops reading: its queue stays under the bound (it falls back to the
// replay window), it is closed with the slow-consumer code once what it has not read
// left the window, and resuming with its cursor gets every event it missed once.
func TestSlowConsumerResumes(t *testing.T) {
	const maxBytes = 256 << 10
	env := newEnv(t, Config{QueueMaxEvents: 1000, QueueMaxBytes: maxBytes, WriteTimeout: 30 * time.Second, WindowEvents: 1000, ReplayTimeout: time.Minute}, bus.Config{})
	ctx := testutil.ContextWithin(t, 5*time.Minute) // a guard against a hung test, not a speed budget
	slow := env.dial(ctx, nil)
	subscribe(t, ctx, slow, nil, "s")
	fast := env.dial(ctx, nil)
	subscribe(t, ctx, fast, nil, "s")
	var server *Client
	env.eng.Clients(func(c *Client) {
		if c.session == slow.Welcome.Session {
			server = c
		}
	})

	fastGot := make(chan []protocol.Event, 1)
	var fastN atomic.Int64
	const total = 8000 // 8 MB: more than loopback socket buffers hold
	go func() {
		var evs []protocol.Event
		for len(evs) < total {
			f, err := fast.ReadFrame(ctx)
			if err != nil {
				t.Errorf("fast client after %d events: %v", len(evs), err)
				break
			}
			evs = append(evs, f.Events...)
			fastN.Store(int64(len(evs)))
		}
		fastGot <- evs
	}()
	pad := strings.Repeat("p", 1000)
	var evs []*protocol.Event
	for i := range total {
		evs = append(evs, &protocol.Event{ID: fmt.Sprintf("s-%d", i), Channel: "s", Data: []byte(`"` + pad + `"`)})
	}
	// Paced by the fast client (at most ~100 KB ahead of it, under its 256 KB bound):
	// a busy machine may stall its reader, and it must not become a slow consumer too.
	for i := 0; i < total; i += 50 {
		for int64(i)-fastN.Load() > 100 && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		env.publish(evs[i : i+50]...)
	}
	testutil.WaitFor(t, "slow-consumer drop", func() bool { return env.eng.Snapshot().Drops["slow_consumer"] > 0 })
	server.mu.Lock()
	peak := server.qPeakBytes
	server.mu.Unlock()
	if peak > maxBytes {
		t.Errorf("queue peaked at %d bytes, bound %d", peak, maxBytes)
	}
	// The fast client is unaffected.
	checkSequence(t, <-fastGot, "s", 0, total)

	// Resume reading: what was written before the overflow, then the 4100 close.
	var got []protocol.Event
	var err error
	for {
		var f *rtclient.Frame
		if f, err = slow.ReadFrame(ctx); err != nil {
			break
		}
		got = append(got, f.Events...)
	}
	if code := rtclient.CloseCode(err); code != protocol.CloseSlow {
		t.Fatalf("close %d (%v), want 4100", code, err)
	}
	if hint := protocol.RetryHint(rtclient.CloseReason(err)); hint <= 0 {
		t.Errorf("no retry hint in %q", rtclient.CloseReason(err))
	}
	if len(got) == 0 || len(got) >= total {
		t.Fatalf("slow client got %d events before the close", len(got))
	}
	checkSequence(t, got, "s", 0, len(got))
	cur := protocol.Cursor{Seq: got[len(got)-1].Seq, Epoch: slow.Welcome.Epoch}
	re := env.dial(ctx, nil)
	f := subscribe(t, ctx, re, &cur, "s")
	if !f.Recovery.Recovered {
		t.Fatalf("not recovered: %+v", f.Recovery)
	}
	rest, _ := readEvents(t, ctx, re, total-len(got))
	checkSequence(t, append(got, rest...), "s", 0, total)
	testutil.WaitFor(t, "slow disconnect counted", func() bool { return env.eng.Snapshot().SlowDisconnects == 1 })
}

// Many resumes from the bus at once: at most MaxBusReplays run together, the rest are
// told to come back later (4103 with a hint) instead of piling up. The replays are held
// until one client was refused, so that they overlap whatever the machine's speed.
func TestReplaySlotsBounded(t *testing.T) {
	rg := &replayGate{open: make(chan struct{})}
	env := newEnvWrapped(t, Config{WindowEvents: 1, MaxBusReplays: 1, ReplayWait: time.Millisecond, ReplayTimeout: testutil.Patience}, bus.Config{},
		func(b bus.Bus) bus.Bus { rg.Bus = b; return rg })
	ctx := testutil.Context(t)
	env.publishN("q", 0, 2000)
	info, _ := env.bus.Info(ctx)
	cur := protocol.Cursor{Seq: 0, Epoch: info.Epoch}
	const clients = 8
	conns := make([]*rtclient.Conn, clients)
	for i := range conns {
		conns[i] = env.dial(ctx, nil)
		if err := conns[i].Subscribe(ctx, "s", []string{"q"}, &cur); err != nil {
			t.Fatal(err)
		}
	}
	// Each client reads until it has every event or is closed (reading at once, so that
	// a refused client's close handshake completes).
	ends := make(chan error, clients)
	for _, c := range conns {
		go func() {
			n := 0
			for {
				f, err := c.ReadFrame(ctx)
				if err != nil {
					ends <- err
					return
				}
				if n += len(f.Events); n == 2000 {
					ends <- nil
					return
				}
			}
		}()
	}
	testutil.WaitFor(t, "a resume refused while the slot is taken", func() bool {
		return env.eng.Snapshot().Disconnects["replay_overloaded"] > 0
	})
	close(rg.open)
	refused, complete := 0, 0
	for range conns {
		switch err := testutil.Receive(t, "a client's end", ends); {
		case err == nil:
			complete++
		case rtclient.CloseCode(err) == protocol.CloseOverloaded && protocol.RetryHint(rtclient.CloseReason(err)) > 0:
			refused++
		default:
			t.Fatalf("unexpected end: %v", err)
		}
	}
	if complete == 0 || refused == 0 {
		t.Fatalf("complete %d refused %d: want some of each", complete, refused)
	}
}

// replayGate holds the bus's replays until open is closed.
type replayGate struct {
	bus.Bus
	open chan struct{}
}

func (g *replayGate) Replay(ctx context.Context, channels []string, after, upTo uint64, fn func(*protocol.Event) error) error {
	select {
	case <-g.open:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.Bus.Replay(ctx, channels, after, upTo, fn)
}

// heldBus delays live delivery to the engine while held: the bus runs ahead of the
// instance, as it does for an instance that is catching up.
type heldBus struct {
	bus.Bus
	mu   sync.Mutex
	open chan struct{}
}

func (h *heldBus) hold() {
	h.mu.Lock()
	h.open = make(chan struct{})
	h.mu.Unlock()
}

func (h *heldBus) release() {
	h.mu.Lock()
	close(h.open)
	h.open = nil
	h.mu.Unlock()
}

func (h *heldBus) Subscribe(ctx context.Context, after uint64, fn bus.Handler) error {
	return h.Bus.Subscribe(ctx, after, func(ev *protocol.Event) {
		h.mu.Lock()
		open := h.open
		h.mu.Unlock()
		if open != nil {
			select {
			case <-open:
			case <-ctx.Done():
			}
		}
		fn(ev)
	})
}

// A cursor ahead of this instance (behind the bus) is recovered, and the live events up
// to it, which the client already processed elsewhere, are not written to it again.
func TestCursorAheadOfInstance(t *testing.T) {
	hb := &heldBus{}
	env := newEnvWrapped(t, Config{}, bus.Config{}, func(b bus.Bus) bus.Bus { hb.Bus = b; return hb })
	ctx := testutil.Context(t)
	watcher := env.dial(ctx, nil)
	subscribe(t, ctx, watcher, nil, "a")
	env.publishN("a", 0, 2)
	readEvents(t, ctx, watcher, 2)

	hb.hold()
	acks := env.publishN("a", 2, 10) // in the bus, not yet dispatched here
	cur := protocol.Cursor{Seq: acks[4].Seq, Epoch: watcher.Welcome.Epoch}
	c := env.dial(ctx, nil)
	f := subscribe(t, ctx, c, &cur, "a")
	if f.Recovery == nil || !f.Recovery.Recovered || f.Recovery.From != cur.Seq+1 {
		t.Fatalf("recovery %+v, want recovered from %d", f.Recovery, cur.Seq+1)
	}
	hb.release()
	last := env.publishN("a", 12, 1)
	got, _ := readEvents(t, ctx, c, 6)
	checkSequence(t, got, "a", 7, 6) // events 7..12: 2..6 were processed before the resume
	if got[len(got)-1].Seq != last[0].Seq {
		t.Fatalf("last event seq %d, want %d", got[len(got)-1].Seq, last[0].Seq)
	}
	if n := env.eng.Snapshot().EventsAlreadySeen; n != 5 {
		t.Errorf("already seen %d, want 5", n)
	}
	all, _ := readEvents(t, ctx, watcher, 11)
	checkSequence(t, all, "a", 2, 11)
}
