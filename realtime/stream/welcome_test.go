package stream

import (
	"sync"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/rtclient"
)

// The first frame of every connection is the welcome, even when the heartbeat sweep
// runs while the connection registers: the sweeper must not queue a ping ahead of it.
// (Found by TestConnectCyclesLeaveNothing on a loaded machine: "first frame is ping".)
func TestWelcomeIsAlwaysFirst(t *testing.T) {
	env := newEnv(t, Config{HeartbeatInterval: time.Millisecond, HeartbeatTimeout: time.Hour}, bus.Config{})
	ctx := testutil.Context(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				c, err := rtclient.Dial(ctx, env.url, nil) // fails unless the first frame is the welcome
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				c.CloseNow()
			}
		}()
	}
	wg.Wait()
}
