package stream

import (
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// BusReplaysActive is the number of recoveries reading from the bus right now: each
// holds one of MaxBusReplays slots and at most one JetStream consumer.
func (e *Engine) BusReplaysActive() int { return len(e.replaySlots) }

// replayLoad tracks demand for bus replay slots so that the clients refused one (4103
// "replay busy") are told to come back when the backlog will have drained, not all
// within RetryMax. With a fixed hint, a storm larger than the slots can serve within
// RetryMax turns into churn: refused clients return, are refused again, and the
// reconnects eat the CPU the replays need (test/cluster's storm: 8,000 refusals for
// 500 clients under load with fixed hints).
type replayLoad struct {
	waiting atomic.Int64 // connections waiting for a slot now
	avgNs   atomic.Int64 // moving average of how long a slot is held
}

// observe records one slot hold time (exponential moving average, weight 1/8).
func (l *replayLoad) observe(d time.Duration) {
	for {
		old := l.avgNs.Load()
		next := int64(d)
		if old > 0 {
			next = old + (int64(d)-old)/8
		}
		if l.avgNs.CompareAndSwap(old, next) {
			return
		}
	}
}

// replayRetryHint is the retry hint for a connection refused a replay slot: the usual
// jittered hint plus a uniform spread over the time the current backlog needs to drain
// (waiting connections x average hold time / slots), capped at 10 x RetryMax.
func (e *Engine) replayRetryHint() int64 {
	l := &e.replayLoad
	drain := time.Duration(l.waiting.Load()*l.avgNs.Load()) / time.Duration(cap(e.replaySlots))
	drain = min(drain, 10*e.cfg.RetryMax)
	hint := e.retryHint()
	if drain > 0 {
		hint += time.Duration(rand.Int64N(int64(drain) + 1)).Milliseconds()
	}
	return hint
}
