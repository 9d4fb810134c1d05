package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
)

// Everything (instances and all NATS nodes) is stopped and restarted on the same
// storage: clients resume by cursor on instances that never saw their events, with no
// gap and no duplicate. Then retention drops the old events: the old cursor is
// answered "not recovered" (too_old). Then the stream is deleted and recreated: a
// cursor of the old stream is answered "not recovered" (epoch_mismatch), by a new
// instance and by one that was running before the stream was recreated.
func TestRestartRetentionRecreate(t *testing.T) {
	t.Parallel() // own cluster and ports; mostly waiting (elections, timeouts)
	ctx := testutil.ContextWithin(t, testBound)
	cl := startCluster(t, 3)
	opts := instanceOpts{
		engine: stream.Config{WindowEvents: 2, BatchWindow: 5 * time.Millisecond, EpochCheckInterval: 200 * time.Millisecond},
		// small enough that a few hundred events push the first ones out
		bus: bus.Config{MaxBytes: 64 << 10},
	}
	ins := []*instance{cl.startInstance(t, "inst-0", 0, opts), cl.startInstance(t, "inst-1", 1, opts)}
	info := busInfo(t, ins[0])
	start := protocol.Cursor{Epoch: info.Epoch, Seq: info.LastSeq}

	// Phase 1: clients on both instances, 40 events per channel.
	chans := [][]string{{"a"}, {"b"}, {"a", "b"}, {"c", "a"}}
	var rs []*recorder
	for i, chs := range chans {
		rs = append(rs, startRecorder(ctx, fmt.Sprintf("client-%d", i), rotate(ins, i%2), chs, start))
	}
	waitSubscribed(t, rs)
	p1 := newPublisher(t, ins...)
	for round := range 8 {
		for _, ch := range []string{"a", "b", "c"} {
			if err := p1.publish(ctx, batch("p1", ch, round*5, 5)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitComplete(t, testutil.Patience, p1, rs)
	cursors := make([]protocol.Cursor, len(rs))
	for i, r := range rs {
		r.cl.Close()
		cursors[i] = r.cl.Cursor()
	}

	// Everything stops; NATS restarts on the same storage; new instances start.
	for _, in := range ins {
		in.kill()
	}
	t0 := time.Now()
	cl.stopAll()
	t1 := time.Now()
	cl.restartAll()
	t.Logf("cluster stopped in %v, restarted in %v", t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	t.Logf("stream %s answering again %v after the restart", bus.DefaultStream, cl.waitStream(bus.DefaultStream).Round(time.Millisecond))
	ins2 := []*instance{cl.startInstance(t, "inst-2", 2, opts), cl.startInstance(t, "inst-3", 0, opts)}
	info2 := busInfo(t, ins2[0])
	if info2.Epoch != info.Epoch || info2.LastSeq != info.LastSeq+uint64(len(p1.order)) {
		t.Fatalf("after restart: epoch %s head %d, want %s and %d", info2.Epoch, info2.LastSeq, info.Epoch, info.LastSeq+uint64(len(p1.order)))
	}

	// Phase 2: events published while the clients are away, then live ones; the
	// clients resume with their cursors on the new instances.
	p2 := newPublisher(t, ins2...)
	for round := range 4 {
		for _, ch := range []string{"a", "b", "c"} {
			if err := p2.publish(ctx, batch("p2", ch, round*5, 5)); err != nil {
				t.Fatal(err)
			}
		}
	}
	rs2 := make([]*recorder, len(rs))
	for i, r := range rs {
		rs2[i] = startRecorder(ctx, r.name+"-resumed", rotate(ins2, i%2), r.channels, cursors[i])
		defer rs2[i].cl.Close()
	}
	for round := 4; round < 8; round++ {
		for _, ch := range []string{"a", "b", "c"} {
			if err := p2.publish(ctx, batch("p2", ch, round*5, 5)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitComplete(t, testutil.Patience, p2, rs2)
	for _, r := range rs2 {
		recs := r.recoveries()
		if len(recs) != 1 || !recs[0].Recovered || recs[0].Source != "bus" {
			t.Fatalf("%s: recoveries %+v, want one recovered from the bus", r.name, recs)
		}
	}
	t.Logf("after a full restart %d clients resumed from JetStream on new instances: %d events each channel",
		len(rs2), len(p2.expected("a")))

	// Retention (64 KiB) drops the oldest events once enough newer ones are stored.
	p3 := newPublisher(t, ins2...)
	for round := range 20 {
		if err := p3.publish(ctx, batch("p3", "bulk", round*50, 50)); err != nil {
			t.Fatal(err)
		}
	}
	info3 := busInfo(t, ins2[0])
	if info3.FirstSeq <= cursors[0].Seq+1 {
		t.Fatalf("retention kept seq %d..%d: the test needs the cursor %d to be older", info3.FirstSeq, info3.LastSeq, cursors[0].Seq)
	}
	for k, in := range ins2 {
		rec := recoverOnce(t, ctx, in, []string{"a"}, cursors[0])
		if rec.Recovered || rec.Reason != protocol.ReasonTooOld {
			t.Fatalf("%s: cursor %+v older than retention (first seq %d): %+v, want not recovered, too_old",
				in.name, cursors[0], info3.FirstSeq, rec)
		}
		_ = k
	}
	t.Logf("cursor seq %d, stream keeps %d..%d: answered too_old", cursors[0].Seq, info3.FirstSeq, info3.LastSeq)

	// The stream is deleted and recreated (new epoch). A cursor of the old stream is
	// refused by a new instance and by inst-2, which was running across the recreation.
	oldCursor := rs2[0].cl.Cursor()
	_, js := cl.connect(1)
	if err := js.DeleteStream(ctx, bus.DefaultStream); err != nil {
		t.Fatal(err)
	}
	ins3 := cl.startInstance(t, "inst-4", 1, opts)
	info4 := busInfo(t, ins3)
	if info4.Epoch == oldCursor.Epoch {
		t.Fatal("recreated stream has the old epoch")
	}
	// Events in the new stream, so that the old cursor's seq is within its range.
	p4 := newPublisher(t, ins3)
	if err := p4.publish(ctx, batch("p4", "a", 0, int(oldCursor.Seq)+5)); err != nil {
		t.Fatal(err)
	}
	for _, in := range []*instance{ins3, ins2[0]} {
		rec := recoverOnce(t, ctx, in, []string{"a"}, oldCursor)
		if rec.Recovered || rec.Reason != protocol.ReasonEpochMismatch {
			t.Errorf("%s: cursor %+v of the deleted stream (new epoch %s): %+v, want not recovered, epoch_mismatch",
				in.name, oldCursor, info4.Epoch, rec)
		}
	}

	testutil.WaitFor(t, "inst-2 to notice the recreation", func() bool { return ins2[0].eng.EpochChanges() > 0 })
	if e := ins2[0].eng.Epoch(); e != info4.Epoch {
		t.Fatalf("inst-2 epoch %s after resync, want %s", e, info4.Epoch)
	}

	// Clients of the new stream, on the instance that lived through the recreation and
	// on the new one, get the new stream's events.
	var rs5 []*recorder
	for i, in := range []*instance{ins2[0], ins3} {
		r := startRecorder(ctx, fmt.Sprintf("new-stream-%d", i), []string{in.ws}, []string{"a"}, protocol.Cursor{Epoch: info4.Epoch, Seq: busInfo(t, in).LastSeq})
		defer r.cl.Close()
		rs5 = append(rs5, r)
	}
	testutil.WaitFor(t, "clients of the new stream subscribed", func() bool {
		return len(rs5[0].recoveries()) > 0 && len(rs5[1].recoveries()) > 0
	})
	p5 := newPublisher(t, ins2[0], ins3)
	for round := range 4 {
		if err := p5.publish(ctx, batch("p5", "a", round*5, 5)); err != nil {
			t.Fatal(err)
		}
	}
	p5.mu.Lock()
	want := p5.order
	p5.mu.Unlock()
	testutil.WaitFor(t, "new stream's events on both instances", func() bool {
		for _, r := range rs5 {
			got := r.events()
			if len(got) < len(want) {
				return false
			}
		}
		return true
	})
	for _, r := range rs5 {
		for i, ev := range r.events() {
			if i >= len(want) || ev.ID != want[i].ID {
				t.Fatalf("%s: event %d is %s, want the new stream's events %v", r.name, i, ev.ID, want)
			}
		}
	}
}

// recoverOnce connects to in with cursor and returns the recovery answer.
func recoverOnce(t testing.TB, ctx context.Context, in *instance, channels []string, cur protocol.Cursor) protocol.Recovery {
	t.Helper()
	r := startRecorder(ctx, "probe", []string{in.ws}, channels, cur)
	defer r.cl.Close()
	var rec protocol.Recovery
	testutil.WaitFor(t, "recovery answer from "+in.name, func() bool {
		recs := r.recoveries()
		if len(recs) > 0 {
			rec = recs[0]
			return true
		}
		return false
	})
	return rec
}
