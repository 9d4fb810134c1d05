package health

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"encore.app/internal/testutil"
)

func TestBackgroundWaitsForConnection(t *testing.T) {
	nc := startNATS(t)
	provided := make(chan *nats.Conn, 1)
	connect := func(ctx context.Context) (*nats.Conn, error) {
		select {
		case c := <-provided:
			return c, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	b := StartBackground(connect, FleetConfig{Bucket: BucketConfig{TTL: 5 * time.Second}, Aggregator: AggregatorOptions{Step: 20 * time.Millisecond}})
	if b.Aggregator.Overview().Instances != 0 {
		t.Fatal("instances before any connection")
	}
	provided <- nc
	ctx := testutil.Context(t)
	pub, err := StartFleet(ctx, nc, FleetConfig{
		Bucket: BucketConfig{TTL: 5 * time.Second},
		Snapshot: func() InstanceSnapshot {
			return InstanceSnapshot{Instance: "i1", Time: time.Now().UnixMilli(), ActiveConnections: 3}
		},
		Publish: PublisherOptions{Interval: 20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	testutil.WaitFor(t, "instance through the background fleet", func() bool {
		return b.Aggregator.Overview().Totals.ActiveConnections == 3
	})
	if err := b.Close(); err != nil || b.Err() != nil {
		t.Fatalf("close %v err %v", err, b.Err())
	}
}

func TestBackgroundCloseWhileWaiting(t *testing.T) {
	b := StartBackground(AwaitConn, FleetConfig{})
	done := make(chan struct{})
	go func() { b.Close(); close(done) }()
	testutil.Receive(t, "Close while waiting for a connection", done)
	if b.Err() != nil {
		t.Fatalf("err after Close: %v", b.Err())
	}
}

func TestAwaitConnTimesOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := AwaitConn(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
}
