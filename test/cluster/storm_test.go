package cluster

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
)

// A reconnect storm: 500 clients (200 under -race) resume at once from an old cursor
// on two instances whose windows hold almost nothing, so every resume needs JetStream. Each instance
// runs at most MaxBusReplays replays at once, so the stream never has more than
// instances x (MaxBusReplays + 1 live consumer) consumers; the excess clients are told
// 4103 with a jittered retry hint, come back, and every one ends with exactly the
// events of its channel.
//
// Whether the storm outruns the replays depends on the machine (on a loaded one the
// connects trickle in and the replays keep up), so the first replays of each instance
// are held until that instance has refused a client: the cap is hit whatever the
// speed, then the storm runs free.
func TestReconnectStormBounded(t *testing.T) {
	// Not parallel: it runs first and alone (parallel tests wait for the serial ones),
	// so that the other clusters do not take its CPU.
	// 500 clients without -race (the figures of docs/operations.md); under -race, where
	// each JetStream replay of the in-process cluster costs several times more, 200: still
	// 25 times the 8 replay slots, and a storm a loaded machine finishes within the bound.
	clients := 500
	if testutil.RaceEnabled {
		clients = 200
	}
	const (
		maxReplays    = 4
		channels      = 10
		perChannel    = 100
		numInstances  = 2
		consumerBound = numInstances * (maxReplays + 1)
	)
	ctx := testutil.ContextWithin(t, testBound)
	cl := startCluster(t, 3)
	var ins []*instance
	holds := make([]*replayHold, numInstances)
	for i := range numInstances {
		holds[i] = &replayHold{release: make(chan struct{})}
		ins = append(ins, cl.startInstance(t, fmt.Sprintf("inst-%d", i), i, instanceOpts{
			engine: stream.Config{WindowEvents: 2, MaxBusReplays: maxReplays, ReplayWait: 500 * time.Millisecond,
				RetryMin: 100 * time.Millisecond, RetryMax: 1500 * time.Millisecond,
				ReplayTimeout: testutil.Patience}, // a held replay must not time out
			wrap: holds[i].wrap,
		}))
	}
	defer func() {
		for _, h := range holds {
			h.open()
		}
	}()
	start := protocol.Cursor{Epoch: busInfo(t, ins[0]).Epoch, Seq: busInfo(t, ins[0]).LastSeq}
	p := newPublisher(t, ins...)
	for c := range channels {
		if err := p.publish(ctx, batch("s", fmt.Sprintf("ch%d", c), 0, perChannel)); err != nil {
			t.Fatal(err)
		}
	}

	// Sample the stream's consumer count (JetStream API), the engines' replay slots
	// and the heap while the storm runs.
	_, js := cl.connect(0)
	st, err := js.Stream(ctx, bus.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	// The storm tests the replay cap, not replication: it starts once both followers
	// hold the events. (A replay consumer placed on a lagging follower fails "replica
	// behind" and its client retries; right after the publish, on a loaded machine.)
	settle := time.Now()
	testutil.WaitFor(t, "both stream followers current", func() bool {
		ictx, cancel := context.WithTimeout(ctx, attempt)
		defer cancel()
		si, err := st.Info(ictx)
		if err != nil || si.Cluster == nil || len(si.Cluster.Replicas) != 2 {
			return false
		}
		for _, r := range si.Cluster.Replicas {
			if !r.Current || r.Offline || r.Lag > 0 {
				return false
			}
		}
		return true
	})
	t.Logf("followers current %v after the publish", time.Since(settle).Round(time.Millisecond))
	// And once every instance has dispatched them: an instance still behind the publish
	// answers a resume "recovered from memory" and delivers the events live as it
	// catches up (correct, but then no resume needs the bus and no replay is refused).
	head := busInfo(t, ins[0]).LastSeq
	for _, in := range ins {
		testutil.WaitFor(t, in.name+" to dispatch the published events", func() bool { return in.eng.Snapshot().HeadSeq >= head })
	}
	var maxConsumers, maxSlots, samples atomic.Int64
	var maxHeap atomic.Uint64
	var baseHeap uint64
	{
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		baseHeap = ms.HeapInuse
	}
	sctx, stopSampling := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-sctx.Done():
				return
			case <-tick.C:
			}
			if si, err := st.Info(sctx); err == nil {
				samples.Add(1)
				setMax(&maxConsumers, int64(si.State.Consumers))
			}
			slots := 0
			for _, in := range ins {
				slots += in.eng.BusReplaysActive()
			}
			setMax(&maxSlots, int64(slots))
			if n%10 == 0 {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > maxHeap.Load() {
					maxHeap.Store(ms.HeapInuse)
				}
			}
		}
	}()

	t0 := time.Now()
	rs := make([]*recorder, clients)
	for i := range rs {
		rs[i] = startRecorder(ctx, fmt.Sprintf("c%d", i), rotate(ins, i%numInstances),
			[]string{fmt.Sprintf("ch%d", i%channels)}, start)
	}
	defer closeRecorders(rs)
	wctx, stopProgress := context.WithCancel(ctx)
	wg.Add(1)
	go func() { // progress, for the log
		defer wg.Done()
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
			}
			done := 0
			for _, r := range rs {
				if r.check(p) == nil {
					done++
				}
			}
			t.Logf("%v: %d of %d clients complete", time.Since(t0).Round(time.Second), done, clients)
		}
	}()
	// Every instance's slots fill up with held replays and the clients behind them are
	// refused (4103) after ReplayWait; then the replays go.
	for i, in := range ins {
		testutil.WaitFor(t, in.name+" to refuse a replay", func() bool {
			return in.eng.Snapshot().Disconnects["replay_overloaded"] > 0
		})
		holds[i].open()
	}
	// Each bus replay costs a consumer create and delete through the JetStream meta
	// leader; on a loaded 2-core machine under -race that is up to ~10 s each, hence
	// the generous bound (quiet machine: 500 clients in 3.3 s without -race).
	waitComplete(t, 8*testutil.Patience, p, rs)
	stopProgress()
	took := time.Since(t0)
	stopSampling()
	wg.Wait()

	var overloaded, bus uint64
	for _, in := range ins {
		s := in.eng.Snapshot()
		overloaded += s.Disconnects["replay_overloaded"]
		bus += s.Recoveries["bus"]
	}
	var reconnects uint64
	for _, r := range rs {
		st := r.cl.Stats()
		reconnects += st.Reconnects
		if st.NotRecovered > 0 {
			t.Errorf("%s: not recovered: %+v", r.name, r.recoveries())
		}
	}
	t.Logf("%d clients x %d events resumed in %v: %d bus recoveries, %d refused 4103 and retried (%d reconnects)",
		clients, perChannel, took.Round(time.Millisecond), bus, overloaded, reconnects)
	t.Logf("peak: %d stream consumers (bound %d), %d replay slots in use (bound %d), heap in use %d MiB (before %d MiB, includes the in-process clients); %d samples",
		maxConsumers.Load(), consumerBound, maxSlots.Load(), numInstances*maxReplays, maxHeap.Load()>>20, baseHeap>>20, samples.Load())
	if bus < uint64(clients) {
		t.Errorf("%d bus recoveries for %d clients", bus, clients)
	}
	if overloaded == 0 {
		t.Error("no client was refused a replay slot: the storm did not hit the cap")
	}
	if samples.Load() == 0 {
		t.Fatal("no consumer count sample")
	}
	if maxConsumers.Load() > consumerBound {
		t.Errorf("%d consumers at once, bound %d", maxConsumers.Load(), consumerBound)
	}
	if maxSlots.Load() > numInstances*maxReplays {
		t.Errorf("%d replay slots at once, bound %d", maxSlots.Load(), numInstances*maxReplays)
	}
}

func setMax(v *atomic.Int64, x int64) {
	for {
		cur := v.Load()
		if x <= cur || v.CompareAndSwap(cur, x) {
			return
		}
	}
}

// replayHold wraps an instance's bus: its replays wait until open is called.
type replayHold struct {
	release chan struct{}
	once    sync.Once
}

func (h *replayHold) open() { h.once.Do(func() { close(h.release) }) }

func (h *replayHold) wrap(b bus.Bus) bus.Bus { return heldBus{Bus: b, release: h.release} }

type heldBus struct {
	bus.Bus
	release <-chan struct{}
}

func (h heldBus) Replay(ctx context.Context, channels []string, after, upTo uint64, fn func(*protocol.Event) error) error {
	select {
	case <-h.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return h.Bus.Replay(ctx, channels, after, upTo, fn)
}
