package stream

import (
	"sync/atomic"
	"time"
)

// batchGovernor widens the batch window under load. Every frame costs a write system
// call and its framing whatever it carries, so an instance serving many busy connections
// spends its CPU on frames; past a budget of frames per second it is cheaper, and in the
// end faster, to put more events in each frame. Each tick the governor estimates the
// busy connections (frames per second x current window: a busy connection writes about
// one frame per window) and sets the window so that they fit the budget, between
// Config.BatchWindow and Config.BatchWindowMax. An idle connection's first event still
// goes out at once: the window only spaces frames of busy connections.
type batchGovernor struct {
	min, max time.Duration
	budget   float64 // frames per second
	window   atomic.Int64
	frames   *atomic.Uint64
	last     uint64
}

func newBatchGovernor(cfg *Config, frames *atomic.Uint64) *batchGovernor {
	g := &batchGovernor{min: cfg.BatchWindow, max: cfg.BatchWindowMax, budget: float64(cfg.FrameBudget), frames: frames}
	g.window.Store(int64(cfg.BatchWindow))
	return g
}

// current is the window writers use now.
func (g *batchGovernor) current() time.Duration { return time.Duration(g.window.Load()) }

// tick recomputes the window from the frames written during the last period.
func (g *batchGovernor) tick(period time.Duration) {
	n := g.frames.Load()
	rate := float64(n-g.last) / period.Seconds()
	g.last = n
	if g.max <= g.min || g.budget <= 0 {
		return
	}
	busy := rate * g.current().Seconds()
	w := time.Duration(busy / g.budget * float64(time.Second))
	g.window.Store(int64(min(max(w, g.min), g.max)))
}

// governPeriod is how often the batch governor recomputes the window.
const governPeriod = 250 * time.Millisecond
