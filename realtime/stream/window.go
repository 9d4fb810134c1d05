package stream

import (
	"sync/atomic"
	"time"
)

// batchGovernor sets the batch window: how long a channel's events wait to share a
// frame. The window is 0 while the instance keeps up, so batching costs no latency:
// events are framed as soon as the fan-out runs and written as soon as a worker gets to
// the connection. The process is short of CPU when the writers fall behind (a
// connection waited in the flusher's FIFO for longer than shortWait) or when the
// instance writes more than FrameBudget event frames per second (every frame costs a
// system call and its framing whatever it carries). Then the window opens at
// BatchWindow and is sized, each tick, for the busy connections (frames per second x
// window: a busy connection writes about one frame per window) to fit the budget,
// between BatchWindow and BatchWindowMax; it widens further while the writers are
// behind and closes again when both signals are quiet.
//
// Once a window is open, the writers are behind only when a connection waited for
// longer than the window, and the window does not narrow while one waited for more than
// half of it. A hot channel readies all its connections at once, once per window, and
// the last of them waits for the writes of all the others however idle the processors
// are: a burst drained within the window is no shortage. Counting one over 5 ms as one
// held 1,000 connections on one channel at the 50 ms ceiling with the server at 0.4
// cores; narrowing as soon as the burst fit made the window swing between 20 and 50 ms.
type batchGovernor struct {
	step, max time.Duration
	budget    float64 // frames per second
	window    atomic.Int64
	frames    *atomic.Uint64 // event frames written (Metrics.eventFrames)
	fifoWait  *atomic.Int64  // longest FIFO wait since the last tick (flusher.maxWait)
	last      uint64
	behindFor int // consecutive ticks with the writers behind (tick's goroutine only)
}

// shortWait: a connection that waited longer than this for a writer means the writers
// are behind.
const shortWait = 5 * time.Millisecond

func newBatchGovernor(cfg *Config, frames *atomic.Uint64, fifoWait *atomic.Int64) *batchGovernor {
	g := &batchGovernor{step: cfg.BatchWindow, max: cfg.BatchWindowMax, budget: float64(cfg.FrameBudget),
		frames: frames, fifoWait: fifoWait}
	if g.fixed() {
		g.window.Store(int64(g.step))
	}
	return g
}

// fixed: BatchWindowMax <= BatchWindow asks for that window always.
func (g *batchGovernor) fixed() bool { return g.max <= g.step }

// current is the window the fan-out uses now.
func (g *batchGovernor) current() time.Duration { return time.Duration(g.window.Load()) }

// tick recomputes the window from the frames written and the writers' delay during
// the last period.
func (g *batchGovernor) tick(period time.Duration) {
	n := g.frames.Load()
	rate := float64(n-g.last) / period.Seconds()
	g.last = n
	wait := time.Duration(g.fifoWait.Swap(0))
	if g.fixed() || g.step <= 0 {
		return
	}
	over := g.budget > 0 && rate > g.budget
	cur := g.current()
	behind := wait > max(shortWait, cur)
	if behind {
		g.behindFor++
	} else {
		g.behindFor = 0
	}
	var next time.Duration
	switch {
	// A closed window opens when the writers were behind for two ticks in a row: one
	// late writer (a GC pause, a core taken by another process) is no load.
	case cur == 0 && (over || g.behindFor >= 2):
		next = g.step
	case cur == 0:
		next = 0
	default:
		busy := rate * cur.Seconds()
		next = time.Duration(0)
		if g.budget > 0 {
			next = time.Duration(busy / g.budget * float64(time.Second))
		}
		switch {
		case behind:
			next = max(next, 2*cur)
		case wait > cur/2: // the burst still takes over half the window: hold it
			next = max(next, cur)
		}
		if next < g.step/2 && !over && wait < shortWait/2 {
			next = 0 // quiet again: back to immediate frames
		} else {
			next = min(max(next, g.step), g.max)
		}
	}
	g.window.Store(int64(next))
}

// governPeriod is how often the batch governor recomputes the window.
const governPeriod = 250 * time.Millisecond
