package stream

import (
	"runtime"
	"sync"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/rtclient"
)

// 10,000 connect/subscribe/disconnect cycles leave no connection, goroutine or heap
// behind (goleak checks the goroutines of the whole package at exit).
func TestConnectCyclesLeaveNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("long cycle test")
	}
	env := newEnv(t, Config{}, bus.Config{})
	ctx := testutil.ContextWithin(t, 240*time.Second)
	warm := func(n int) {
		var wg sync.WaitGroup
		per := n / 8
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					c, err := rtclient.Dial(ctx, env.url, &rtclient.DialOptions{Channels: []string{"leak", "leak.2"}})
					if err != nil {
						t.Errorf("dial: %v", err)
						return
					}
					if _, err := c.ReadFrame(ctx); err != nil { // subscribed
						t.Errorf("read: %v", err)
					}
					if i%2 == 0 {
						c.Close()
					} else {
						c.CloseNow() // abrupt: no close frame
					}
				}
			}()
		}
		wg.Wait()
	}
	warm(400) // warm pools and caches before the baseline
	testutil.WaitFor(t, "no connections", func() bool { return env.eng.Snapshot().ActiveConnections == 0 })
	baseG, baseH := settle()

	warm(10_000)
	testutil.WaitFor(t, "no connections", func() bool { return env.eng.Snapshot().ActiveConnections == 0 })
	s := env.eng.Snapshot()
	if s.Subscriptions != 0 {
		t.Errorf("subscriptions left: %d", s.Subscriptions)
	}
	env.eng.pool.mu.Lock()
	left := len(env.eng.pool.index)
	env.eng.pool.mu.Unlock()
	if left != 0 {
		t.Errorf("channel index holds %d channels", left)
	}
	var g int
	var h uint64
	_ = testutil.Eventually(ctx, testutil.Patience, func() bool { // goroutines and heap settle
		g, h = settle()
		return g <= baseG+5 && (h <= baseH+4<<20 || testutil.Encore) // encore test records every round trip: no heap bound there
	})
	t.Logf("goroutines %d -> %d, heap %d KB -> %d KB, connections total %d", baseG, g, baseH>>10, h>>10, s.ConnectionsTotal)
	if g > baseG+5 {
		t.Errorf("goroutines grew from %d to %d", baseG, g)
	}
	// Under encore test the runtime keeps a trace of every round trip of the test: the
	// heap grows with the test, not with the engine.
	if h > baseH+4<<20 && !testutil.Encore {
		t.Errorf("heap grew from %d KB to %d KB", baseH>>10, h>>10)
	}
}

func settle() (goroutines int, heap uint64) {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return runtime.NumGoroutine(), m.HeapInuse
}
