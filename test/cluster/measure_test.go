package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
)

// Sizing figures for docs/operations.md. These benchmarks print figures; they assert
// nothing about speed. Run (without -race, for representative figures):
//
//	go test -run '^$' -bench . -benchtime 1x ./test/cluster/

var payload = json.RawMessage(`{"text":"` + strings.Repeat("x", 180) + `"}`) // ~200 B events

func publishLoad(b *testing.B, e *stream.Engine, batches, size int) {
	ctx := context.Background()
	t0 := time.Now()
	for i := range batches {
		evs := make([]*protocol.Event, size)
		for k := range evs {
			evs[k] = &protocol.Event{ID: fmt.Sprintf("b%d-%d-%d", b.N, i, k), Channel: fmt.Sprintf("ch%d", k%10), Data: payload}
		}
		if _, err := e.Publish(ctx, evs); err != nil {
			b.Fatal(err)
		}
	}
	d := time.Since(t0)
	b.ReportMetric(float64(batches*size)/d.Seconds(), "events/s")
	b.ReportMetric(float64(d.Microseconds())/float64(batches)/1000, "ms/batch")
}

// Publish throughput of one instance, batches of 100 events of ~200 bytes, acked by
// JetStream: embedded server (R1) and three-node cluster (R3).
func BenchmarkPublishEmbeddedR1(b *testing.B) {
	bs, err := bus.NewJetStream(context.Background(), bus.Config{DataDir: b.TempDir(), Logger: quiet()})
	if err != nil {
		b.Fatal(err)
	}
	defer bs.Close()
	e, err := stream.New(stream.Config{Logger: quiet()}, bs)
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	b.ResetTimer()
	publishLoad(b, e, 200, 100)
}

func BenchmarkPublishClusterR3(b *testing.B) {
	cl := startCluster(b, 3)
	in := cl.startInstance(b, "bench", 0, instanceOpts{})
	b.ResetTimer()
	publishLoad(b, in.eng, 200, 100)
}

// Fan-out across three instances on the R3 cluster: 300 clients (100 per instance) on
// one channel, 2000 events published through every instance at a steady rate; figures:
// end-to-end latency publish-to-client (event TS to receipt, ms) and delivered events/s.
func BenchmarkFanoutThreeInstances(b *testing.B) {
	cl := startCluster(b, 3)
	var ins []*instance
	for i := range 3 {
		ins = append(ins, cl.startInstance(b, fmt.Sprintf("inst-%d", i), i, instanceOpts{}))
	}
	fanout(b, ins)
}

// fanout runs the fan-out measurement on three started instances.
func fanout(b *testing.B, ins []*instance) {
	ctx := testutil.Context(b)
	info := busInfo(b, ins[0])
	start := protocol.Cursor{Epoch: info.Epoch, Seq: info.LastSeq}
	var rs []*recorder
	const clients, events = 300, 2000
	for i := range clients {
		r := startRecorder(ctx, fmt.Sprintf("c%d", i), rotate(ins, i%3), []string{"fan"}, start)
		rs = append(rs, r)
	}
	defer closeRecorders(rs)
	waitSubscribed(b, rs)
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < events; i += 20 {
		evs := make([]*protocol.Event, 20)
		for k := range evs {
			evs[k] = &protocol.Event{ID: fmt.Sprintf("f-%d", i+k), Channel: "fan", Data: payload}
		}
		if _, err := ins[(i/20)%3].eng.Publish(ctx, evs); err != nil {
			b.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	testutil.WaitFor(b, "every client got every event", func() bool {
		for _, r := range rs {
			if len(r.events()) < events {
				return false
			}
		}
		return true
	})
	d := time.Since(t0)
	var lat []float64 // ms from the bus timestamp (ms resolution) to the client's receipt
	for _, r := range rs {
		r.mu.Lock()
		for i, ev := range r.got {
			lat = append(lat, float64(r.when[i].Sub(time.UnixMilli(ev.TS)).Microseconds())/1000)
		}
		r.mu.Unlock()
	}
	slices.Sort(lat)
	b.ReportMetric(lat[len(lat)/2], "p50-ms")
	b.ReportMetric(lat[len(lat)*99/100], "p99-ms")
	b.ReportMetric(lat[len(lat)-1], "max-ms")
	b.ReportMetric(float64(clients*events)/d.Seconds(), "delivered/s")
	b.ReportMetric(float64(events)/d.Seconds(), "published/s")
	var snaps []string
	for _, in := range ins {
		s := in.eng.Snapshot()
		snaps = append(snaps, fmt.Sprintf("%s: %.1f events/frame, write p99 %.1fms", in.name, s.EventsPerFrame, s.WriteLatencyMs.P99))
	}
	b.Logf("%d clients x %d events in %v; %s", clients, events, d.Round(time.Millisecond), strings.Join(snaps, "; "))
}
