package cluster

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
)

// One NATS node of three is killed mid-stream while events are published through
// every instance: the node leading the stream, so JetStream must elect a new leader.
// Every acknowledged event is still in the stream and reaches every client once, in
// order; publishing goes on (a batch that fails during the election is resent with the
// same IDs and deduplicated).
func TestNATSNodeKilled(t *testing.T) {
	t.Parallel() // own cluster and ports; mostly waiting (elections, timeouts)
	ctx := testutil.ContextWithin(t, testBound)
	cl := startCluster(t, 3)
	var ins []*instance
	for i := range 3 {
		ins = append(ins, cl.startInstance(t, fmt.Sprintf("inst-%d", i), i, instanceOpts{
			engine: stream.Config{BatchWindow: 5 * time.Millisecond},
		}))
	}
	_, js := cl.connect(0)
	st, err := js.Stream(ctx, bus.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	si, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if si.Config.Replicas != 3 || si.Cluster == nil || len(si.Cluster.Replicas) != 2 {
		t.Fatalf("stream is not R3: replicas %d, cluster %+v", si.Config.Replicas, si.Cluster)
	}
	victim := slices.IndexFunc(cl.nodes, func(n *natsNode) bool { return n.name == si.Cluster.Leader })
	if victim < 0 {
		t.Fatalf("leader %q is not a node of the cluster", si.Cluster.Leader)
	}
	start := protocol.Cursor{Epoch: busInfo(t, ins[0]).Epoch, Seq: si.State.LastSeq}

	channels := []string{"a", "b", "c", "d"}
	var rs []*recorder
	for i := range 12 {
		rs = append(rs, startRecorder(ctx, fmt.Sprintf("client-%d", i), rotate(ins, i%3),
			[]string{channels[i%4], channels[(i+1)%4]}, start))
	}
	defer closeRecorders(rs)
	waitSubscribed(t, rs)

	p := newPublisher(t, ins...)
	var wg sync.WaitGroup
	var pubErr error
	var ackedAtKill int
	killed := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for round := range 60 {
			if round == 20 {
				p.mu.Lock()
				ackedAtKill = len(p.order)
				p.mu.Unlock()
				close(killed)
			}
			for _, ch := range channels {
				if err := p.publish(ctx, batch("n", ch, round*5, 5)); err != nil {
					pubErr = err
					return
				}
			}
		}
	}()
	<-killed
	killAt := time.Now()
	cl.stopNode(victim)
	wg.Wait()
	if pubErr != nil {
		t.Fatal(pubErr)
	}
	t.Logf("killed node %s (stream leader) after %d acked events; publishing finished %v later with %d acked, %d resends",
		cl.nodes[victim].name, ackedAtKill, time.Since(killAt).Round(time.Millisecond), len(p.order), p.retries)
	if len(p.order) != 60*5*len(channels) {
		t.Fatalf("%d events acked, want %d", len(p.order), 60*5*len(channels))
	}

	waitComplete(t, testutil.Patience, p, rs)
	t.Logf("every client complete %v after the kill", time.Since(killAt).Round(time.Millisecond))

	// Every acked event is in the stream, through a surviving node.
	survivor := ins[(victim+1)%3]
	for _, ch := range channels {
		want := p.expected(ch)
		var got []string
		err := survivor.bus.Replay(ctx, []string{ch}, start.Seq, want[len(want)-1].Seq, func(ev *protocol.Event) error {
			got = append(got, ev.ID)
			return nil
		})
		if err != nil {
			t.Fatalf("replay %s: %v", ch, err)
		}
		if len(got) != len(want) {
			t.Fatalf("channel %s: stream holds %d events, %d were acked", ch, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i].ID {
				t.Fatalf("channel %s: stream event %d is %s, acked %s", ch, i, got[i], want[i].ID)
			}
		}
	}
	si, err = st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("new stream leader %s; %d clients reconnected", si.Cluster.Leader, reconnected(rs))
}

func reconnected(rs []*recorder) int {
	n := 0
	for _, r := range rs {
		if r.cl.Stats().Reconnects > 0 {
			n++
		}
	}
	return n
}

// An instance that starts while the cluster has no JetStream quorum (two of three nodes
// down: a cluster still forming, or recovering) waits for it instead of failing on the
// first lost stream request.
func TestBusStartsBeforeQuorum(t *testing.T) {
	t.Parallel()
	cl := startCluster(t, 3)
	cl.stopNode(1)
	cl.stopNode(2)
	restarting := make(chan struct{}) // closed just before the first node comes back
	back := make(chan struct{})
	go func() {
		defer close(back)
		time.Sleep(2 * time.Second) // the bus keeps trying meanwhile
		close(restarting)
		cl.startNode(1)
		cl.startNode(2)
	}()
	ctx := testutil.Context(t)
	start := time.Now()
	b, err := bus.NewJetStream(ctx, bus.Config{URL: cl.urls(0), Replicas: 3, Logger: testutil.Logger(t), Stream: "QUORUM"})
	select {
	case <-restarting:
	default:
		t.Errorf("stream ready after %v, before any node came back", time.Since(start))
	}
	<-back
	if err != nil {
		t.Fatalf("bus did not start once the quorum was back: %v", err)
	}
	defer b.Close()
	t.Logf("stream ready %v after the start, nodes back after 2s", time.Since(start).Round(time.Millisecond))
}
