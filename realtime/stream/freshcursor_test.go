package stream

import (
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

// heartbeatNow pings every connection now (what the sweeper does once per interval):
// each call is one heartbeat interval after the previous one on the sweeper's clock.
// Engines of these tests have an hour-long interval and a timeout of many intervals, so
// their own sweeper stays out of the way and no connection is closed as silent.
func (env *testEnv) heartbeatNow() {
	e := env.eng
	e.sweep(e.lastPing.Add(e.cfg.HeartbeatInterval))
}

var quietHeartbeats = Config{HeartbeatInterval: time.Hour, HeartbeatTimeout: 1000 * time.Hour}

// A server ping carries the head and the epoch, and is written after every event of the
// connection's channels up to that head: with events flowing on the connection's
// channel and another one, each ping's seq covers only events the client already got.
func TestPingSeqFollowsEvents(t *testing.T) {
	cfg := quietHeartbeats
	cfg.BatchWindow = 20 * time.Millisecond // events wait in the queue, the pings behind them
	env := newEnv(t, cfg, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)
	subscribe(t, ctx, c, nil, "a")

	const rounds = 20
	var acksMu sync.Mutex
	var published []uint64 // seqs of "a" events
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := range rounds {
			acks, err := env.eng.Publish(ctx, []*protocol.Event{
				{ID: fmt.Sprintf("a-%d", i), Channel: "a"}, {ID: fmt.Sprintf("b-%d", i), Channel: "b"},
			})
			if err != nil {
				t.Error(err)
				return
			}
			acksMu.Lock()
			published = append(published, acks[0].Seq)
			acksMu.Unlock()
		}
	}()
	type seen struct {
		ping     uint64
		received map[uint64]bool
	}
	var pings []seen
	var until atomic.Uint64 // the reader stops at a ping with at least this seq
	until.Store(^uint64(0))
	received := map[uint64]bool{}
	read := make(chan error, 1)
	go func() {
		for {
			f, err := c.ReadFrame(ctx)
			if err != nil {
				read <- err
				return
			}
			switch f.Type {
			case protocol.TypeEvents:
				for _, ev := range f.Events {
					received[ev.Seq] = true
				}
			case protocol.TypePing:
				if f.Epoch != c.Welcome.Epoch {
					read <- fmt.Errorf("ping epoch %q, want %q", f.Epoch, c.Welcome.Epoch)
					return
				}
				snap := make(map[uint64]bool, len(received))
				for s := range received {
					snap[s] = true
				}
				pings = append(pings, seen{f.Seq, snap})
				if f.Seq >= until.Load() {
					read <- nil
					return
				}
			}
		}
	}()
	for done := false; !done; {
		select {
		case <-pubDone:
			done = true
		default:
			env.heartbeatNow()
			time.Sleep(time.Millisecond)
		}
	}
	// A last ping, after everything was fanned out, covers the last event.
	acksMu.Lock()
	last := published[len(published)-1]
	acksMu.Unlock()
	env.waitFanned(last + 1) // the "b" event after it
	until.Store(last)
	env.heartbeatNow()
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if len(pings) < 2 {
		t.Fatalf("%d pings", len(pings))
	}
	for i, p := range pings {
		for _, s := range published {
			if s <= p.ping && !p.received[s] {
				t.Fatalf("ping %d carries seq %d, but event %d of the channel had not arrived before it", i, p.ping, s)
			}
		}
	}
	if got := pings[len(pings)-1].ping; got < last {
		t.Fatalf("last ping seq %d, want at least %d", got, last)
	}
}

// retentionBus keeps about four 2 KB events: a few busy events push every older one,
// and the quiet channel's last event, out of the stream.
var retentionBus = bus.Config{MaxBytes: 8 << 10}

// padded is an event of about 2 KB.
func padded(id, channel string) *protocol.Event {
	return &protocol.Event{ID: id, Channel: channel, Data: []byte(`"` + strings.Repeat("x", 2000) + `"`)}
}

// A client on a quiet channel while another channel is busy past retention: with the
// cursor of its last event it resumes too_old and must resync although it missed
// nothing; with the cursor a server ping gave it, it resumes recovered, and the quiet
// channel's next event arrives. Real NATS, retention by bytes.
func TestQuietChannelResumeAfterRetention(t *testing.T) {
	cfg := quietHeartbeats
	cfg.WindowEvents = 2 // the instance's window cannot answer either
	env := newEnv(t, cfg, retentionBus)
	ctx := testutil.Context(t)
	c := env.dial(ctx, &rtclient.DialOptions{Channels: []string{"quiet"}})
	if f, err := c.ReadFrame(ctx); err != nil || f.Type != protocol.TypeSubscribed {
		t.Fatalf("subscribe answer: %+v %v", f, err)
	}
	env.publish(&protocol.Event{ID: "q-0", Channel: "quiet"})
	evs, _ := readEvents(t, ctx, c, 1)
	lastEvent := protocol.Cursor{Seq: evs[0].Seq, Epoch: c.Welcome.Epoch} // what an old client resumes from

	var busy []bus.Ack
	for i := range 12 {
		busy = append(busy, env.publish(padded(fmt.Sprintf("busy-%d", i), "busy"))...)
	}
	info, err := env.bus.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.FirstSeq <= lastEvent.Seq+1 {
		t.Fatalf("retention kept the stream from %d: the test needs it past %d", info.FirstSeq, lastEvent.Seq+1)
	}
	env.waitFanned(busy[len(busy)-1].Seq)

	env.heartbeatNow()
	var fresh protocol.Cursor
	for {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == protocol.TypeEvents {
			t.Fatalf("events of another channel: %+v", f.Events)
		}
		if f.Type == protocol.TypePing {
			fresh = protocol.Cursor{Seq: f.Seq, Epoch: f.Epoch}
			break
		}
	}
	if fresh.Epoch != lastEvent.Epoch || fresh.Seq != busy[len(busy)-1].Seq {
		t.Fatalf("ping cursor %+v, want {%d %s}", fresh, busy[len(busy)-1].Seq, lastEvent.Epoch)
	}
	c.CloseNow()

	// Two more busy events while away: within retention, so the bus replays (nothing of
	// the quiet channel).
	more := env.publish(padded("busy-12", "busy"), padded("busy-13", "busy"))
	env.waitFanned(more[1].Seq)

	old := env.dial(ctx, nil)
	if f := subscribe(t, ctx, old, &lastEvent, "quiet"); f.Recovery == nil || f.Recovery.Recovered || f.Recovery.Reason != protocol.ReasonTooOld {
		t.Fatalf("resume from the last event: %+v, want too_old (the scenario is past retention)", f.Recovery)
	}
	resumed := env.dial(ctx, nil)
	f := subscribe(t, ctx, resumed, &fresh, "quiet")
	if f.Recovery == nil || !f.Recovery.Recovered {
		t.Fatalf("resume from the ping's cursor: %+v, want recovered", f.Recovery)
	}
	next := env.publish(&protocol.Event{ID: "q-1", Channel: "quiet"})
	got, _ := readEvents(t, ctx, resumed, 1)
	if got[0].ID != "q-1" || got[0].Seq != next[0].Seq {
		t.Fatalf("after the resume: %+v", got)
	}
}

// waitFanned waits until every event up to seq is in its subscribers' queues (what a
// ping carries; publish returns at the bus ack, dispatch follows).
func (env *testEnv) waitFanned(seq uint64) {
	env.t.Helper()
	testutil.WaitFor(env.t, fmt.Sprintf("seq %d fanned out", seq), func() bool {
		s, _ := env.eng.liveHead()
		return s >= seq
	})
}
