package health

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/pgmigrations"
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

// recordBackends open the health records of a bucket on each backend (one server
// per test): the fleet tests run against every one.
func recordBackends() map[string]func(t *testing.T) func(t *testing.T, cfg BucketConfig) Records {
	return map[string]func(t *testing.T) func(t *testing.T, cfg BucketConfig) Records{
		"kv": func(t *testing.T) func(t *testing.T, cfg BucketConfig) Records {
			js, err := jetstream.New(startNATS(t))
			if err != nil {
				t.Fatal(err)
			}
			return func(t *testing.T, cfg BucketConfig) Records {
				kv, err := OpenBucket(testutil.Context(t), js, cfg)
				if err != nil {
					t.Fatal(err)
				}
				return KVRecords(kv)
			}
		},
		"postgres": func(t *testing.T) func(t *testing.T, cfg BucketConfig) Records {
			pool, err := pgxpool.New(testutil.Context(t), pgtest.DB(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pool.Close)
			if _, err := pgmigrations.Apply(testutil.Context(t), pool); err != nil {
				t.Fatal(err)
			}
			return func(t *testing.T, cfg BucketConfig) Records {
				r, err := OpenPostgresRecords(testutil.Context(t), pool, cfg, nil)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
		},
	}
}

func forEachBackend(t *testing.T, fn func(t *testing.T, open func(t *testing.T, cfg BucketConfig) Records)) {
	for name, be := range recordBackends() {
		t.Run(name, func(t *testing.T) { fn(t, be(t)) })
	}
}

func TestFleetPublishAggregateWithdraw(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T, BucketConfig) Records) {
		bucket := BucketConfig{TTL: 10 * time.Second}
		agg := StartFleetOn(open(t, bucket), FleetConfig{Bucket: bucket, Aggregate: true, Aggregator: AggregatorOptions{Step: 50 * time.Millisecond}})
		defer agg.Close()
		var pubs []*Fleet
		for _, name := range []string{"host-a", "host-b"} {
			n := 0
			f := StartFleetOn(open(t, bucket), FleetConfig{
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
	})
}

// An instance that stops publishing without withdrawing (a crash) disappears when its
// record expires (the bucket's TTL): the aggregator sees the expiry.
func TestFleetRecordTTLExpiry(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T, BucketConfig) Records) {
		recs := open(t, BucketConfig{Name: "health-ttl", TTL: time.Second})
		// The aggregator's own TTL is an hour, so only the record's expiry can remove the instance.
		a := NewAggregator(AggregatorOptions{TTL: time.Hour, Step: time.Hour})
		runCtx, stop := context.WithCancel(testutil.Context(t))
		done := make(chan error, 1)
		go func() { done <- a.Run(runCtx, recs) }()
		defer func() {
			stop()
			<-done
		}()
		p := NewPublisher(recs, func() InstanceSnapshot { return InstanceSnapshot{Instance: "crashed", Time: 1} }, PublisherOptions{})
		if err := p.PublishOnce(testutil.Context(t)); err != nil {
			t.Fatal(err)
		}
		testutil.WaitFor(t, "instance seen", func() bool { return a.Overview().Instances == 1 })
		start := time.Now()
		testutil.WaitFor(t, "instance expired by the record's TTL", func() bool { return a.Overview().Instances == 0 })
		t.Logf("expired %v after being seen (TTL 1s)", time.Since(start).Round(10*time.Millisecond))
	})
}

func TestRecordsRefuseOversizedValue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open func(*testing.T, BucketConfig) Records) {
		recs := open(t, BucketConfig{})
		if err := recs.Put(testutil.Context(t), "big", make([]byte, MaxSnapshotBytes+1)); err == nil {
			t.Fatal("records accepted a value over MaxSnapshotBytes")
		}
		if err := recs.Delete(testutil.Context(t), "absent"); err != nil {
			t.Fatalf("deleting an absent key: %v", err)
		}
		p := NewPublisher(recs, func() InstanceSnapshot { return InstanceSnapshot{} }, PublisherOptions{})
		if err := p.PublishOnce(testutil.Context(t)); err == nil || p.Failures() != 1 {
			t.Fatalf("invalid snapshot: err %v failures %d", err, p.Failures())
		}
	})
}
