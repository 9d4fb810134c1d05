package server

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
	"encore.app/realtime/stream"
)

// NAT storm (issue 17): many clients behind one address, the network cut again and
// again. With the default limits every client catches up after the last cut, nothing
// lost, and no reconnect is refused by the per-address budgets: resumes have their
// own, and they fit an office behind one NAT. The test asserts completion and
// completeness, not a duration (the time after the last cut is logged).
func TestNATStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("storm test")
	}
	const clients, channels, cuts = 200, 10, 3
	s, base := startHTTP(t) // the default limits
	proxy := testutil.StartCutProxy(t, strings.TrimPrefix(base, "http://"))
	ctx := testutil.ContextWithin(t, 3*time.Minute)

	type rec struct {
		mu   sync.Mutex
		seen map[string]int
	}
	recs := make([]*rec, clients)
	cs := make([]*rtclient.Client, clients)
	quiet := slog.New(slog.DiscardHandler)
	for i := range clients {
		r := &rec{seen: map[string]int{}}
		recs[i] = r
		cs[i] = rtclient.Start(ctx, rtclient.Config{
			URL: "ws://" + proxy.Addr() + "/v2/realtime/stream", Channels: []string{fmt.Sprintf("nat.%d", i%channels)},
			Logger: quiet, BackoffMin: 100 * time.Millisecond, BackoffMax: 2 * time.Second,
			OnEvent: func(ev protocol.Event) {
				r.mu.Lock()
				r.seen[ev.ID]++
				r.mu.Unlock()
			},
		})
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	testutil.WaitFor(t, "every client subscribed", func() bool { return s.eng.Snapshot().Subscriptions == clients })

	// The publisher goes on through the cuts (it is not behind the NAT).
	var mu sync.Mutex
	published := 0
	publish := func() {
		mu.Lock()
		n := published
		published++
		mu.Unlock()
		evs := make([]*protocol.Event, channels)
		for ch := range channels {
			evs[ch] = &protocol.Event{ID: fmt.Sprintf("e-%d-%d", n, ch), Channel: fmt.Sprintf("nat.%d", ch)}
		}
		// A batch the bus could not take in time (a loaded machine) is sent again with
		// the same ids, as a real publisher would: the bus dedupes by id.
		for try := 1; ; try++ {
			_, err := s.Publish(ctx, evs)
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Errorf("publish batch %d: %v", n, err)
				return
			}
			if try <= 3 {
				t.Logf("publish batch %d: %v (sent again)", n, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	pubCtx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-pubCtx.Done():
				return
			case <-tick.C:
				publish()
			}
		}
	}()
	for range cuts { // the network cut for 2 s every 5 s
		time.Sleep(3 * time.Second)
		proxy.Cut()
		time.Sleep(2 * time.Second)
		proxy.Heal()
	}
	healed := time.Now()
	time.Sleep(500 * time.Millisecond)
	stopPub()
	<-pubDone
	publish() // a last batch after the storm

	mu.Lock()
	total := published
	mu.Unlock()
	complete := func(i int) bool {
		r := recs[i]
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.seen) == total
	}
	testutil.WaitWithin(t, 2*time.Minute, "every client caught up", func() bool {
		for i := range clients {
			if !complete(i) {
				return false
			}
		}
		return true
	})
	t.Logf("%d clients behind one address, %d cuts of 2 s: all complete %v after the last cut", clients, cuts, time.Since(healed).Round(100*time.Millisecond))
	for i, r := range recs {
		r.mu.Lock()
		for n := range total {
			id := fmt.Sprintf("e-%d-%d", n, i%channels)
			if r.seen[id] != 1 {
				t.Errorf("client %d saw %s %d times", i, id, r.seen[id])
			}
		}
		r.mu.Unlock()
	}
	var reconnects uint64
	for _, c := range cs {
		reconnects += c.Stats().Reconnects
	}
	snap := s.eng.Snapshot()
	t.Logf("%d reconnects, refusals %v", reconnects, snap.Refusals)
	if reconnects < clients {
		t.Errorf("only %d reconnects: the cuts did not cut", reconnects)
	}
	if n := snap.Refusals[stream.RefuseRateLimited]; n != 0 {
		t.Errorf("%d reconnects refused by the per-address budgets", n)
	}
}
