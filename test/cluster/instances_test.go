package cluster

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"encore.app/internal/testutil"
	"encore.app/monitoring/health"
	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
)

// Three instances on a three-node cluster (R3), clients spread across them, events
// published through every instance; instance 0 is killed mid-stream. Every client
// gets every event of its channels exactly once, in order, including the clients of
// the dead instance, which resume on the others by cursor. The survivors' windows are
// tiny, so those resumes come from JetStream, not memory. The dead instance's health
// record expires by itself.
func TestThreeInstancesOneKilled(t *testing.T) {
	t.Parallel() // own cluster and ports; mostly waiting (elections, timeouts)
	ctx := testutil.ContextWithin(t, testBound)
	cl := startCluster(t, 3)
	// The live instances refresh their health records every ttl/3: a ttl a loaded
	// machine cannot outrun (with 2 s, a publisher stalled for two refreshes would let a
	// live record expire).
	const ttl = 5 * time.Second
	var ins []*instance
	for i := range 3 {
		ins = append(ins, cl.startInstance(t, fmt.Sprintf("inst-%d", i), i, instanceOpts{
			engine:   stream.Config{WindowEvents: 2, BatchWindow: 5 * time.Millisecond},
			fleetTTL: ttl,
		}))
	}
	info := busInfo(t, ins[0])
	start := protocol.Cursor{Epoch: info.Epoch, Seq: info.LastSeq}

	channels := []string{"a", "b", "c", "d", "e", "f"}
	gate := newDialGate()
	hc := gate.client()
	var rs []*recorder
	for i := range 30 {
		chs := []string{channels[i%6], channels[(i+1)%6]}
		if i%5 == 0 {
			chs = append(chs, channels[(i+3)%6])
		}
		rs = append(rs, startGatedRecorder(ctx, fmt.Sprintf("client-%d", i), rotate(ins, i%3), chs, start, hc))
	}
	defer closeRecorders(rs)
	waitSubscribed(t, rs)
	onDead := 0
	for _, r := range rs {
		if r.cl.Instance() == "inst-0" {
			onDead++
		}
	}
	if onDead == 0 {
		t.Fatal("no client on inst-0")
	}

	// The health bucket holds the three instances.
	_, js := cl.connect(1)
	kv, err := js.KeyValue(ctx, health.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "three health records", func() bool {
		for _, in := range ins {
			if _, err := kv.Get(ctx, health.Key(in.name)); err != nil {
				return false
			}
		}
		return true
	})

	p := newPublisher(t, ins...)
	var killedAt time.Time
	const rounds = 40 // each round: 5 events on every channel, through the next instance
	for round := range rounds {
		if round == rounds/2 {
			// The dead instance's clients reconnect only after the survivors have
			// dispatched a round past their windows: their resumes must come from
			// JetStream, whatever the machine's load does to the timing.
			gate.hold()
			ins[0].kill()
			p.remove(ins[0])
			// A crash does not withdraw the record: it is still there...
			if _, err := kv.Get(ctx, health.Key("inst-0")); err != nil {
				t.Fatalf("inst-0 record right after the kill: %v", err)
			}
			killedAt = time.Now()
			t.Logf("killed inst-0 after %d events (%d clients on it)", len(p.order), onDead)
		}
		for _, ch := range channels {
			if err := p.publish(ctx, batch("x", ch, round*5, 5)); err != nil {
				t.Fatal(err)
			}
		}
		if round == rounds/2 {
			last := p.lastSeq()
			testutil.WaitFor(t, "survivors dispatched the round after the kill", func() bool {
				return ins[1].eng.Snapshot().HeadSeq >= last && ins[2].eng.Snapshot().HeadSeq >= last
			})
			gate.release()
		}
	}
	waitComplete(t, testutil.Patience, p, rs)

	var moved, busRecoveries int
	for _, r := range rs {
		if st := r.cl.Stats(); st.Reconnects > 0 {
			moved++
			if in := r.cl.Instance(); in == "inst-0" {
				t.Errorf("%s still on inst-0", r.name)
			}
			if st.NotRecovered > 0 {
				t.Errorf("%s: %d resumes not recovered: %+v", r.name, st.NotRecovered, r.recoveries())
			}
		}
		for _, rec := range r.recoveries() {
			if rec.Source == "bus" {
				busRecoveries++
			}
		}
	}
	if moved < onDead {
		t.Errorf("%d clients reconnected, %d were on the killed instance", moved, onDead)
	}
	for _, in := range ins[1:] {
		s := in.eng.Snapshot()
		t.Logf("%s: connections %d, published %d, dispatched %d, recoveries %v", in.name,
			s.ActiveConnections, s.EventsPublished, s.EventsDispatched, s.Recoveries)
	}
	t.Logf("%d events acked, %d publish resends, %d clients moved, %d recoveries from JetStream",
		len(p.order), p.retries, moved, busRecoveries)
	if busRecoveries == 0 {
		t.Error("no client recovered from JetStream: the test did not exercise cross-instance resume")
	}

	// ... and expires by itself (TTL); the live ones stay.
	testutil.WaitFor(t, "inst-0 health record to expire", func() bool {
		_, err := kv.Get(ctx, health.Key("inst-0"))
		return errors.Is(err, jetstream.ErrKeyNotFound)
	})
	t.Logf("inst-0 health record gone %v after the kill (TTL %v)", time.Since(killedAt).Round(time.Millisecond), ttl)
	for _, in := range ins[1:] {
		if _, err := kv.Get(ctx, health.Key(in.name)); err != nil {
			t.Errorf("%s record: %v", in.name, err)
		}
	}
}
