package stream

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// virtualClock is an injected clock (Config.now) that moves only when the test says.
type virtualClock struct {
	mu sync.Mutex
	t  time.Time
}

func (v *virtualClock) Now() time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.t
}

func (v *virtualClock) Set(t time.Time) {
	v.mu.Lock()
	v.t = t
	v.mu.Unlock()
}

// serverClient returns the engine's Client of the connection with session.
func serverClient(t testing.TB, e *Engine, session string) *Client {
	t.Helper()
	var found *Client
	e.Clients(func(c *Client) {
		if c.session == session {
			found = c
		}
	})
	if found == nil {
		t.Fatalf("no server connection for session %s", session)
	}
	return found
}

// A connection that sends nothing is closed 4001 by the first sweep after two heartbeat
// intervals (docs/protocol.md "Heartbeats": sweeps run every fifth of an interval, so
// within 2.2 intervals); one that sends a frame every sweep stays; every connection gets
// a server ping once per interval. Driven by an injected clock: the engine's own
// sweeper ticks every fifth of an hour and never fires during the test.
func TestHeartbeatTimeoutIsTwoIntervals(t *testing.T) {
	const interval = time.Hour
	clock := &virtualClock{t: time.Unix(1_800_000_000, 0)}
	env := newEnv(t, Config{HeartbeatInterval: interval, now: clock.Now}, bus.Config{})
	ctx := testutil.Context(t)
	base := clock.Now()
	silent := env.dial(ctx, nil)
	alive := env.dial(ctx, nil)
	silentC := serverClient(t, env.eng, silent.Welcome.Session)
	aliveC := serverClient(t, env.eng, alive.Welcome.Session)

	// The alive client's frames are read at the virtual time of each step: it pings and
	// waits for the pong (the server read the ping) before the sweep of that step. Server
	// pings in between are counted.
	alivePings := 0
	step := func(now time.Time) {
		t.Helper()
		clock.Set(now)
		if err := alive.Send(ctx, &protocol.ClientFrame{Type: protocol.TypePing, TS: now.UnixMilli()}); err != nil {
			t.Fatal(err)
		}
		for {
			f, err := alive.ReadFrame(ctx)
			if err != nil {
				t.Fatalf("alive client: %v", err)
			}
			if f.Type == protocol.TypePing {
				alivePings++
				continue
			}
			if f.Type == protocol.TypePong && f.TS == now.UnixMilli() {
				break
			}
		}
		env.eng.sweep(now)
	}

	// The silent client reads (reading sends nothing) on its own goroutine. A sweep that
	// closes a connection drops what it still has queued, so each server ping is waited
	// for before the next sweep: otherwise the ping of the 10th sweep could still be
	// queued when the 11th closes the connection.
	var silentPings atomic.Int32
	silentDone := make(chan error, 1)
	go func() {
		for {
			f, err := silent.ReadFrame(ctx)
			if err != nil {
				silentDone <- err
				return
			}
			if f.Type == protocol.TypePing {
				silentPings.Add(1)
			}
		}
	}()

	period := interval / sweepsPerHeartbeat
	closedAt := time.Duration(0)
	for k := 1; k <= 3*sweepsPerHeartbeat; k++ {
		at := time.Duration(k) * period
		step(base.Add(at))
		if silentC.closing() {
			closedAt = at
			break
		}
		if k%sweepsPerHeartbeat == 0 {
			want := int32(k / sweepsPerHeartbeat)
			testutil.WaitFor(t, "the silent client's server ping", func() bool { return silentPings.Load() >= want })
		}
	}
	if closedAt <= 2*interval || closedAt > 2*interval+period {
		t.Fatalf("silent connection closed after %v of virtual time, want after 2 intervals (%v) and within one sweep (%v) of it", closedAt, 2*interval, period)
	}
	if aliveC.closing() {
		t.Fatal("a connection that sends frames was closed")
	}
	// Pings at 1, 2 intervals (5th and 10th sweep); the 11th sweep closed the silent one.
	err := <-silentDone
	pings := silentPings.Load()
	if code := rtclient.CloseCode(err); code != protocol.CloseHeartbeat {
		t.Fatalf("silent client: close %d (%v), want 4001", code, err)
	}
	if pings != 2 {
		t.Errorf("silent client got %d pings before the close, want 2", pings)
	}
	// The alive client's last ping is read by the loop of a later step: drain one more.
	step(base.Add(closedAt + period))
	if alivePings != 2 {
		t.Errorf("alive client got %d server pings over %v of virtual time, want 2", alivePings, closedAt+period)
	}
	testutil.WaitFor(t, "heartbeat_timeout disconnect", func() bool {
		return env.eng.Snapshot().Disconnects["heartbeat_timeout"] == 1
	})
}
