package health

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// stallingKV is health records whose puts succeed until stall is set, then block until
// their context ends (a put in flight when the publisher stops).
type stallingKV struct {
	Records       // methods other than Put and Delete are not used
	mu            sync.Mutex
	stall         bool
	puts, deletes int
}

func (kv *stallingKV) Put(ctx context.Context, key string, value []byte) error {
	kv.mu.Lock()
	stall := kv.stall
	kv.puts++
	kv.mu.Unlock()
	if stall {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (kv *stallingKV) Delete(ctx context.Context, key string) error {
	kv.mu.Lock()
	kv.deletes++
	kv.mu.Unlock()
	return nil
}

// Stopping a publisher is not a failed put: a put cut short by the stop, or a tick that
// fires together with it, is not counted in Failures. (Under load this made
// TestFleetPublishAggregateWithdraw report "puts 3 failures 1".) A put that times out
// on its own is.
func TestPublisherStopIsNotAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		kv := &stallingKV{}
		p := NewPublisher(kv, func() InstanceSnapshot { return InstanceSnapshot{Instance: "a", Time: 1} },
			PublisherOptions{Interval: time.Second, Timeout: 10 * time.Second})
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		time.Sleep(2500 * time.Millisecond) // puts at 0, 1 s, 2 s
		synctest.Wait()
		kv.mu.Lock()
		kv.stall = true
		kv.mu.Unlock()
		time.Sleep(time.Second) // the put at 3 s is in flight
		synctest.Wait()
		stop()
		<-done
		if p.Puts() != 3 || p.Failures() != 0 || kv.deletes != 1 {
			t.Fatalf("puts %d failures %d deletes %d, want 3, 0 and the withdraw", p.Puts(), p.Failures(), kv.deletes)
		}

		// A put that times out while the publisher runs is a failure.
		if err := p.PublishOnce(context.Background()); err == nil || p.Failures() != 1 {
			t.Fatalf("timed-out put: err %v failures %d, want an error and 1 failure", err, p.Failures())
		}
	})
}
