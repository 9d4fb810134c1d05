package health

import (
	"context"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// FleetConfig configures StartFleet.
type FleetConfig struct {
	Bucket BucketConfig
	// Snapshot, when set, is published every Publish.Interval (this process is an instance).
	Snapshot func() InstanceSnapshot
	Publish  PublisherOptions
	// Aggregate, when true, runs an Aggregator over the bucket (this process serves the
	// overview and the dashboard). Its TTL defaults to the bucket's TTL.
	Aggregate  bool
	Aggregator AggregatorOptions
	// Use, when set, is the Aggregator to run (Aggregate is implied, Aggregator ignored):
	// for a caller that must serve an (empty) overview before the bucket is reachable.
	Use *Aggregator
}

// Fleet runs a Publisher and/or an Aggregator on one set of Records. It owns their
// goroutines: Close stops and waits for them.
type Fleet struct {
	Publisher  *Publisher  // nil unless FleetConfig.Snapshot was set
	Aggregator *Aggregator // nil unless FleetConfig.Aggregate

	cancel context.CancelFunc
	wg     sync.WaitGroup
	errMu  sync.Mutex
	err    error // first error of the aggregator's Run other than cancellation
}

// StartFleet opens the health bucket on nc and starts what cfg asks for. The caller
// keeps ownership of nc (Close does not close it).
func StartFleet(ctx context.Context, nc *nats.Conn, cfg FleetConfig) (*Fleet, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	cfg.Bucket.defaults()
	kv, err := OpenBucket(ctx, js, cfg.Bucket)
	if err != nil {
		return nil, err
	}
	return StartFleetOn(KVRecords(kv), cfg), nil
}

// StartFleetOn starts what cfg asks for on records (KVRecords, PostgresRecords;
// cfg.Bucket is the records' business). The caller keeps ownership of recs.
func StartFleetOn(recs Records, cfg FleetConfig) *Fleet {
	cfg.Bucket.defaults()
	runCtx, cancel := context.WithCancel(context.Background())
	f := &Fleet{cancel: cancel}
	if cfg.Aggregate || cfg.Use != nil {
		if cfg.Aggregator.TTL <= 0 {
			cfg.Aggregator.TTL = cfg.Bucket.TTL
		}
		f.Aggregator = cfg.Use
		if f.Aggregator == nil {
			f.Aggregator = NewAggregator(cfg.Aggregator)
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			if err := f.Aggregator.Run(runCtx, recs); err != nil && runCtx.Err() == nil {
				f.errMu.Lock()
				f.err = err
				f.errMu.Unlock()
			}
		}()
	}
	if cfg.Snapshot != nil {
		if cfg.Publish.Interval <= 0 {
			cfg.Publish.Interval = cfg.Bucket.TTL / 3
		}
		f.Publisher = NewPublisher(recs, cfg.Snapshot, cfg.Publish)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.Publisher.Run(runCtx)
		}()
	}
	return f
}

// Err returns the aggregator's error if its Run stopped early.
func (f *Fleet) Err() error {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return f.err
}

// Close stops the publisher (which deletes its key) and the aggregator, and waits for both.
func (f *Fleet) Close() error {
	f.cancel()
	f.wg.Wait()
	return nil
}
