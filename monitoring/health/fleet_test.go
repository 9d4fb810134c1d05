package health

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"encore.app/internal/testutil"
)

// startNATS runs an embedded nats-server with JetStream on 127.0.0.1 for one test.
func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(testutil.Patience) {
		t.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		s.Shutdown()
		s.WaitForShutdown()
	})
	return nc
}

func TestFleetPublishAggregateWithdraw(t *testing.T) {
	nc := startNATS(t)
	ctx := testutil.Context(t)
	bucket := BucketConfig{TTL: 10 * time.Second}

	agg, err := StartFleet(ctx, nc, FleetConfig{Bucket: bucket, Aggregate: true, Aggregator: AggregatorOptions{Step: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer agg.Close()

	var pubs []*Fleet
	for _, name := range []string{"host-a", "host-b"} {
		n := 0
		f, err := StartFleet(ctx, nc, FleetConfig{
			Bucket:  bucket,
			Publish: PublisherOptions{Interval: 50 * time.Millisecond},
			Snapshot: func() InstanceSnapshot {
				n++ // only the publisher goroutine calls this
				s := InstanceSnapshot{Instance: name, Time: time.Now().UnixMilli(), ActiveConnections: 7, EventsDelivered: uint64(n) * 100}
				s.Client.RTT = NewHistogram()
				s.Client.RTT.Record(42)
				return s
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, f)
	}
	testutil.WaitFor(t, "both instances", func() bool {
		ov := agg.Aggregator.Overview()
		return ov.Instances == 2 && ov.Totals.ActiveConnections == 14 && ov.Rates.EventsDelivered > 0
	})
	if p := agg.Aggregator.Overview().ClientRTT; p.Count != 2 || !within(p.P50, 42) {
		t.Fatalf("merged rtt %+v", p)
	}
	testutil.WaitFor(t, "series points", func() bool { return len(agg.Aggregator.Series().Points) >= 3 })

	// Closing a publisher deletes its key: the aggregator drops it without waiting for the TTL.
	pubs[0].Close()
	testutil.WaitFor(t, "host-a withdrawn", func() bool {
		ov := agg.Aggregator.Overview()
		return ov.Instances == 1 && ov.InstanceRows[0].Instance == "host-b"
	})
	pubs[1].Close()
	if pubs[1].Publisher.Puts() == 0 || pubs[1].Publisher.Failures() != 0 {
		t.Fatalf("puts %d failures %d", pubs[1].Publisher.Puts(), pubs[1].Publisher.Failures())
	}
	if err := agg.Err(); err != nil {
		t.Fatal(err)
	}
}

// An instance that stops publishing without withdrawing (a crash) disappears when the
// bucket's TTL expires its entry: the aggregator sees NATS's expiry marker.
func TestFleetBucketTTLExpiry(t *testing.T) {
	nc := startNATS(t)
	ctx := testutil.Context(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := OpenBucket(ctx, js, BucketConfig{Name: "health-ttl", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// The aggregator's own TTL is an hour, so only the bucket's expiry can remove the instance.
	a := NewAggregator(AggregatorOptions{TTL: time.Hour, Step: time.Hour})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx, kv) }()
	defer func() {
		stop()
		<-done
	}()

	p := NewPublisher(kv, func() InstanceSnapshot { return InstanceSnapshot{Instance: "crashed", Time: 1} }, PublisherOptions{})
	if err := p.PublishOnce(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "instance seen", func() bool { return a.Overview().Instances == 1 })
	start := time.Now()
	testutil.WaitFor(t, "instance expired by bucket TTL", func() bool { return a.Overview().Instances == 0 })
	t.Logf("expired %v after being seen (bucket TTL 1s)", time.Since(start).Round(10*time.Millisecond))
}

func TestOpenBucketRefusesOversizedValue(t *testing.T) {
	nc := startNATS(t)
	ctx := testutil.Context(t)
	js, _ := jetstream.New(nc)
	kv, err := OpenBucket(ctx, js, BucketConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "big", make([]byte, MaxSnapshotBytes+1)); err == nil {
		t.Fatal("bucket accepted a value over MaxSnapshotBytes")
	}
	p := NewPublisher(kv, func() InstanceSnapshot { return InstanceSnapshot{} }, PublisherOptions{})
	if err := p.PublishOnce(ctx); err == nil || p.Failures() != 1 {
		t.Fatalf("invalid snapshot: err %v failures %d", err, p.Failures())
	}
}
