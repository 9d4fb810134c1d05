package health

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultBucket is the key-value bucket holding one snapshot per live instance.
const DefaultBucket = "realtime-health"

// BucketConfig configures the health bucket.
type BucketConfig struct {
	// Name of the bucket (default DefaultBucket).
	Name string
	// TTL after which an instance's snapshot expires (default 15s; at least 1s). Publish
	// at a fraction of it (PublisherOptions.Interval, default TTL/3).
	TTL time.Duration
}

func (c *BucketConfig) defaults() {
	if c.Name == "" {
		c.Name = DefaultBucket
	}
	if c.TTL <= 0 {
		c.TTL = 15 * time.Second
	}
	if c.TTL < time.Second {
		c.TTL = time.Second
	}
}

// OpenBucket creates the health bucket, or updates it to cfg: in memory, one value per
// key, entries expiring after TTL, and expiry markers kept for TTL so that watchers see
// an expiry as a purge.
func OpenBucket(ctx context.Context, js jetstream.JetStream, cfg BucketConfig) (jetstream.KeyValue, error) {
	cfg.defaults()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:         cfg.Name,
		Description:    "realtime fleet health: one snapshot per live instance",
		History:        1,
		TTL:            cfg.TTL,
		LimitMarkerTTL: cfg.TTL,
		Storage:        jetstream.MemoryStorage,
		MaxValueSize:   MaxSnapshotBytes,
	})
	if err != nil {
		return nil, fmt.Errorf("open health bucket %s: %w", cfg.Name, err)
	}
	return kv, nil
}

// PublisherOptions configure a Publisher.
type PublisherOptions struct {
	// Interval between puts (default 5s). Keep it well under the bucket TTL.
	Interval time.Duration
	// Timeout of one put (default 2s).
	Timeout time.Duration
}

// Publisher puts this instance's snapshot into the health records every Interval.
type Publisher struct {
	recs     Records                 // immutable after construction
	snapshot func() InstanceSnapshot // immutable after construction
	opts     PublisherOptions        // immutable after construction
	failures atomic.Uint64           // puts that failed
	puts     atomic.Uint64           // puts that succeeded
	lastKey  atomic.Pointer[string]  // key of the last put, deleted on stop
}

// NewPublisher returns a Publisher that calls snapshot before every put. snapshot must
// be safe to call from the Publisher's goroutine.
func NewPublisher(recs Records, snapshot func() InstanceSnapshot, opts PublisherOptions) *Publisher {
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	return &Publisher{recs: recs, snapshot: snapshot, opts: opts}
}

// PublishOnce takes a snapshot and puts it.
func (p *Publisher) PublishOnce(ctx context.Context) error {
	s := p.snapshot()
	if err := ValidateSnapshot(&s); err != nil {
		p.failures.Add(1)
		return err
	}
	b, err := EncodeSnapshot(&s)
	if err != nil {
		p.failures.Add(1)
		return err
	}
	key := Key(s.Instance)
	pctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	if err := p.recs.Put(pctx, key, b); err != nil {
		if ctx.Err() != nil {
			return err // stopping (Run's context ended): not a failure of the records
		}
		p.failures.Add(1)
		return fmt.Errorf("put health %s: %w", key, err)
	}
	p.lastKey.Store(&key)
	p.puts.Add(1)
	return nil
}

// Run publishes at once and then every Interval until ctx is done; then it deletes its
// key (so the aggregator drops the instance at once) and returns. A failed put is
// counted (Failures) and retried at the next tick.
func (p *Publisher) Run(ctx context.Context) {
	_ = p.PublishOnce(ctx)
	t := time.NewTicker(p.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			p.withdraw()
			return
		case <-t.C:
			_ = p.PublishOnce(ctx)
		}
	}
}

func (p *Publisher) withdraw() {
	key := p.lastKey.Load()
	if key == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.opts.Timeout)
	defer cancel()
	if err := p.recs.Delete(ctx, *key); err != nil {
		p.failures.Add(1)
	}
}

// Puts and Failures count successful and failed puts.
func (p *Publisher) Puts() uint64     { return p.puts.Load() }
func (p *Publisher) Failures() uint64 { return p.failures.Load() }
