package stream

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
)

// fanoutUnderTest is a fan-out whose frames are recorded instead of queued.
type fanoutUnderTest struct {
	*fanout
	gov     *batchGovernor
	mu      sync.Mutex
	emitted []emitted
	hold    chan struct{} // when set, emit waits on it (a busy fan-out)
}

type emitted struct {
	at      time.Time
	n       int // events in the frame
	channel string
	phase   int // of phases
	phases  int
}

func newFanoutUnderTest(cfg Config) *fanoutUnderTest {
	cfg, _ = cfg.withDefaults()
	var frames atomic.Uint64
	var wait atomic.Int64
	e := &Engine{cfg: cfg}
	ft := &fanoutUnderTest{gov: newBatchGovernor(&e.cfg, &frames, &wait)}
	e.batch = ft.gov
	ft.fanout = newFanout(e)
	ft.settle = func(*outEvent) {}
	ft.emit = func(evs []*outEvent, phase int) {
		phases := phasesOf(phase)
		ft.mu.Lock()
		hold := ft.hold
		ft.mu.Unlock()
		if hold != nil {
			<-hold
		}
		ft.mu.Lock()
		ft.emitted = append(ft.emitted, emitted{at: time.Now(), n: len(evs), channel: evs[0].channel, phase: phase, phases: phases})
		ft.mu.Unlock()
	}
	return ft
}

// phasesOf is how many phases share the window of a round of phase.
func phasesOf(phase int) int {
	if phase == everyPhase {
		return 1
	}
	return fanPhases
}

// take returns the frames emitted since the last call.
func (ft *fanoutUnderTest) take() []emitted {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	out := ft.emitted
	ft.emitted = nil
	return out
}

func (ft *fanoutUnderTest) add(seq uint64) { ft.addTo("c", seq) }

func (ft *fanoutUnderTest) addTo(channel string, seq uint64) {
	ft.fanout.add(&outEvent{seq: seq, channel: channel})
}

// An event reaching a quiet channel is framed at once, without waiting for any window;
// events that arrive while the fan-out is busy share the next frame; under load (the
// governor opened a window) a channel's events wait for the window, except full frames.
func TestFanoutBatchesOnlyWhenBusy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := newFanoutUnderTest(Config{BatchMaxEvents: 100, BatchWindow: 20 * time.Millisecond, BatchWindowMax: 50 * time.Millisecond})
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { defer close(done); ft.run(stop) }()
		defer func() { close(stop); <-done }()

		start := time.Now()
		ft.add(1)
		synctest.Wait()
		got := ft.take()
		if len(got) != 1 || !got[0].at.Equal(start) || got[0].n != 1 {
			t.Fatalf("first event: %+v, want one frame of 1 at once", got)
		}

		// A busy fan-out: the events arriving meanwhile share one frame.
		release := make(chan struct{})
		ft.mu.Lock()
		ft.hold = release
		ft.mu.Unlock()
		ft.add(2)
		synctest.Wait() // the fan-out is now busy with event 2
		ft.add(3)
		ft.add(4)
		ft.mu.Lock()
		ft.hold = nil
		ft.mu.Unlock()
		close(release)
		synctest.Wait()
		got = ft.take()
		if len(got) != 2 || got[0].n != 1 || got[1].n != 2 {
			t.Fatalf("busy fan-out: %+v, want frames of 1 and then 2", got)
		}

		// Short of CPU: the governor set a 20 ms window. Every phase's turn is due (the
		// last take is a window old): each takes the event at once.
		ft.gov.window.Store(int64(20 * time.Millisecond))
		time.Sleep(20 * time.Millisecond)
		at := time.Now()
		ft.add(5)
		synctest.Wait()
		ft.add(6)
		synctest.Wait()
		everyPhase := func(what string, got []emitted, at time.Time, n int) {
			t.Helper()
			if len(got) != fanPhases {
				t.Fatalf("%s: %+v, want one frame per phase", what, got)
			}
			for i, e := range got {
				if e.phase != i || e.phases != fanPhases || !e.at.Equal(at) || e.n != n {
					t.Fatalf("%s: %+v, want %d events for every phase at %v", what, got, n, at)
				}
			}
		}
		everyPhase("first event of the window", ft.take(), at, 1)
		// The next turns are spread over the window: phase g's at 5 ms x (g+1) after it.
		time.Sleep(4 * time.Millisecond)
		synctest.Wait()
		if got := ft.take(); len(got) != 0 {
			t.Fatalf("frame inside the window: %+v", got)
		}
		for i := range 100 {
			ft.add(uint64(7 + i))
		}
		synctest.Wait()
		everyPhase("full frame inside the window", ft.take(), at.Add(4*time.Millisecond), 100)
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
		got = ft.take()
		if len(got) != fanPhases {
			t.Fatalf("end of the window: %+v, want one frame per phase", got)
		}
		for i, e := range got {
			if want := at.Add(time.Duration(i+1) * 5 * time.Millisecond); e.phase != i || e.n != 1 || !e.at.Equal(want) {
				t.Fatalf("end of the window: %+v, want phase %d's 1 left at %v", got, i, want)
			}
		}
	})
}

// A window that opens while events flow spreads the phases' turns over it: each phase
// takes once per window, a quarter of a window after the one before, and keeps its
// turn after a quiet spell. Every phase gets every event, in order, exactly once.
func TestFanoutPhasesSpreadOverTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const w = 20 * time.Millisecond
		ft := newFanoutUnderTest(Config{BatchMaxEvents: 100, BatchWindow: w, BatchWindowMax: 50 * time.Millisecond})
		var got [fanPhases][]uint64
		ft.emit = func(evs []*outEvent, phase int) {
			phases := phasesOf(phase)
			ft.mu.Lock()
			defer ft.mu.Unlock()
			ft.emitted = append(ft.emitted, emitted{at: time.Now(), n: len(evs), phase: phase, phases: phases})
			for g := range fanPhases {
				if phase == everyPhase || g == phase { // without a window one round is for every connection
					for _, ev := range evs {
						got[g] = append(got[g], ev.seq)
					}
				}
			}
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() { defer close(done); ft.run(stop) }()
		defer func() { close(stop); <-done }()

		start := time.Now()
		seq := uint64(0)
		send := func(d time.Duration) { // an event every millisecond for d
			for range int(d / time.Millisecond) {
				seq++
				ft.add(seq)
				synctest.Wait()
				time.Sleep(time.Millisecond)
			}
		}
		send(time.Millisecond) // taken at once: no window yet
		ft.take()
		ft.gov.window.Store(int64(w))
		send(4 * w)
		time.Sleep(w) // quiet
		synctest.Wait()
		ft.take()
		quiet := time.Now()
		send(2 * w)
		time.Sleep(2 * w)
		synctest.Wait()
		for _, e := range ft.take() {
			// after the quiet spell every phase takes the first event at once, and then
			// its turns are back at start + its offset (a quarter window per phase) +
			// whole windows
			off := e.at.Sub(start) - time.Duration(e.phase+1)*w/fanPhases
			if e.phases != fanPhases || (off%w != 0 && !e.at.Equal(quiet)) || e.at.Before(quiet) {
				t.Fatalf("phase %d took at +%v: want +%v plus whole windows", e.phase, e.at.Sub(start), time.Duration(e.phase+1)*w/fanPhases)
			}
		}
		for g := range fanPhases {
			if len(got[g]) != int(seq) {
				t.Fatalf("phase %d got %d events, want %d", g, len(got[g]), seq)
			}
			for i, s := range got[g] {
				if s != uint64(i+1) {
					t.Fatalf("phase %d: event %d is %d", g, i, s)
				}
			}
		}
	})
}

// stubBus is a bus for engines that are never started.
type stubBus struct{ bus.Bus }

// One round's events are framed once per channel for the connections that get only that
// channel's events (the same frame for all of them), and merged in seq order for a
// connection that gets events of several channels; each starts after its subscription.
func TestFanoutSharesFramesAndKeepsOrder(t *testing.T) {
	e, err := New(Config{Logger: testutil.Logger(t), BatchMaxEvents: 3}, stubBus{})
	if err != nil {
		t.Fatal(err)
	}
	conn := func(chs ...string) *Client {
		c := &Client{e: e}
		e.pool.subscribe(c, chs, nil, "", 10, func(*replayJob) {})
		return c
	}
	a1, a2, b1, ab := conn("a"), conn("a"), conn("b"), conn("a", "b")
	var evs []*outEvent
	for i, ch := range []string{"a", "a", "b", "a", "b", "a"} {
		ev := &outEvent{seq: uint64(i + 1), channel: ch}
		e.pool.record(ev)
		evs = append(evs, ev)
	}
	late := conn("a") // joined at head 6: gets nothing of this round
	push := e.fan.fanOut(evs, everyPhase, nil)
	frames := func(c *Client) (out [][]uint64, fs []*frame) {
		for _, it := range c.q[c.qHead:] {
			var seqs []uint64
			for _, ev := range it.fr.events {
				seqs = append(seqs, ev.seq)
			}
			out = append(out, seqs)
			fs = append(fs, it.fr)
		}
		return out, fs
	}
	wantA := [][]uint64{{1, 2, 4}, {6}}
	gotA1, fa1 := frames(a1)
	gotA2, fa2 := frames(a2)
	if !slices.EqualFunc(gotA1, wantA, slices.Equal) || !slices.EqualFunc(gotA2, wantA, slices.Equal) {
		t.Fatalf("a subscribers got %v and %v, want %v", gotA1, gotA2, wantA)
	}
	if fa1[0] != fa2[0] || fa1[1] != fa2[1] {
		t.Error("the subscribers of a got frames of their own, not one shared frame")
	}
	if got, _ := frames(b1); !slices.EqualFunc(got, [][]uint64{{3, 5}}, slices.Equal) {
		t.Fatalf("b subscriber got %v", got)
	}
	if got, _ := frames(ab); !slices.EqualFunc(got, [][]uint64{{1, 2, 3}, {4, 5, 6}}, slices.Equal) {
		t.Fatalf("a+b subscriber got %v, want every event in seq order", got)
	}
	if got, _ := frames(late); len(got) != 0 {
		t.Fatalf("late subscriber got %v", got)
	}
	if len(push) != 4 {
		t.Errorf("%d writers to start, want 4", len(push))
	}
}

// A writer scheduled after the flusher stopped (a connection refused while the engine
// closes) is ended at once: nobody would run it, and its teardown would wait forever.
func TestWriterScheduledAfterFlusherStop(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	e := env.eng
	c := &Client{e: e}
	c.idle.L = &c.mu
	e.fl.stop()
	c.enqueueCtrl([]byte(`{"type":"pong"}`))
	done := make(chan struct{})
	go func() { c.waitWriterIdle(time.Hour, func() {}); close(done) }()
	testutil.Receive(t, "the writer's end", done)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sched != schedNone {
		t.Fatalf("writer still scheduled (%v)", c.sched)
	}
}
