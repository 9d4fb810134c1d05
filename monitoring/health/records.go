package health

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Records is where the fleet's snapshots live: one value per key (an instance),
// expiring unless put again within the TTL. KVRecords (a NATS key-value bucket with a
// TTL) and PostgresRecords (a table) implement it. Safe for concurrent use.
type Records interface {
	// Put stores value under key and restarts its TTL. Values over MaxSnapshotBytes
	// are refused.
	Put(ctx context.Context, key string, value []byte) error
	// Delete removes key (absent keys are not an error).
	Delete(ctx context.Context, key string) error
	// Watch sends every live record, then every change: a put, or a removal (delete
	// or expiry) with Deleted set (and Expired for an expiry), until ctx is done. The channel is closed when the
	// watch ends, by ctx or by a failure (then watch again).
	Watch(ctx context.Context) (<-chan Record, error)
}

// Record is one change seen by Watch.
type Record struct {
	Key     string
	Value   []byte
	Deleted bool // deleted or expired
	Expired bool // with Deleted: removed by the TTL (its owner stopped reporting), not by its owner
}

// KVRecords returns the Records of a bucket opened with OpenBucket.
func KVRecords(kv jetstream.KeyValue) Records { return kvRecords{kv} }

type kvRecords struct{ kv jetstream.KeyValue }

func (r kvRecords) Put(ctx context.Context, key string, value []byte) error {
	_, err := r.kv.Put(ctx, key, value)
	return err
}

func (r kvRecords) Delete(ctx context.Context, key string) error {
	if err := r.kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}

// Watch converts the bucket's watcher (expiry markers arrive as purges) on a
// goroutine that ends with ctx or the watcher.
func (r kvRecords) Watch(ctx context.Context) (<-chan Record, error) {
	w, err := r.kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch health bucket: %w", err)
	}
	out := make(chan Record, 16)
	go func() {
		defer close(out)
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil { // end of the initial values
					continue
				}
				rec := Record{Key: e.Key(), Value: e.Value()}
				switch e.Operation() {
				case jetstream.KeyValueDelete:
					rec.Deleted, rec.Value = true, nil
				case jetstream.KeyValuePurge: // the bucket's TTL expired the entry (a marker)
					rec.Deleted, rec.Expired, rec.Value = true, true, nil
				}
				select {
				case out <- rec:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}
