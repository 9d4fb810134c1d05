package stream

import (
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
)

// The hint for a client refused a replay slot spreads over the backlog's drain time,
// within [RetryMin, RetryMax + min(drain, 10 x RetryMax)].
func TestReplayRetryHintSpreadsOverBacklog(t *testing.T) {
	var b bus.Bus = (*bus.JetStream)(nil) // never started: the hint needs no bus
	e, err := New(Config{MaxBusReplays: 4, RetryMin: 100 * time.Millisecond, RetryMax: 200 * time.Millisecond, Logger: testutil.Logger(t)}, b)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	check := func(what string, lo, hi int64) {
		t.Helper()
		var maxSeen int64
		for range 2000 {
			h := e.replayRetryHint()
			if h < lo || h > hi {
				t.Fatalf("%s: hint %d ms outside [%d, %d]", what, h, lo, hi)
			}
			maxSeen = max(maxSeen, h)
		}
		if maxSeen < hi*3/4 {
			t.Errorf("%s: hints up to %d ms only, expected spread up to %d", what, maxSeen, hi)
		}
	}
	check("idle", 100, 200)

	for range 50 {
		e.replayLoad.observe(100 * time.Millisecond)
	}
	e.replayLoad.waiting.Store(40) // 40 x 100ms / 4 slots = 1s to drain
	check("backlog", 100, 200+1000)

	e.replayLoad.waiting.Store(100000) // capped at 10 x RetryMax
	check("cap", 100, 200+2000)
}
