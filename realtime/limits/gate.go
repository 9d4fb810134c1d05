package limits

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// GateConfig configures NewGate. Zero values disable the corresponding bound.
type GateConfig struct {
	// MaxConnections bounds this instance's open connections (0: no bound).
	MaxConnections int
	// ConnectRate bounds connections admitted per second by this instance (0: no
	// bound), with burst ConnectBurst (default ConnectRate).
	ConnectRate  float64
	ConnectBurst int
	// ResumeShare is the share of both bounds reserved for resuming sessions (requests
	// with a cursor): new sessions get only (1-ResumeShare) of the connections and of
	// the rate (default 0.2).
	ResumeShare float64
	// RetryMin and RetryMax bound the jittered retry hint of a refusal (defaults 1s, 10s),
	// added to the wait for the next token: clients told to come back come back spread.
	RetryMin, RetryMax time.Duration
}

// Gate is this instance's admission gate for reconnect storms and overloads: resuming
// sessions are admitted up to the full bounds, new sessions only up to (1-ResumeShare)
// of them, so during a storm the clients that already had a session (and a cursor)
// get back first and new ones wait. Safe for concurrent use.
type Gate struct {
	cfg                       GateConfig
	freshMax                  int64
	active                    atomic.Int64
	all                       *rate.Limiter // every admission; nil without a rate
	fresh                     *rate.Limiter // new sessions only
	mu                        sync.Mutex    // guards the two-limiter reservation
	refusedNew, refusedResume atomic.Uint64
}

// NewGate returns a gate.
func NewGate(cfg GateConfig) *Gate {
	if cfg.ResumeShare <= 0 || cfg.ResumeShare >= 1 {
		cfg.ResumeShare = 0.2
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = time.Second
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(10*time.Second, cfg.RetryMin)
	}
	g := &Gate{cfg: cfg}
	if cfg.MaxConnections > 0 {
		g.freshMax = int64(float64(cfg.MaxConnections) * (1 - cfg.ResumeShare))
	}
	if cfg.ConnectRate > 0 {
		burst := cfg.ConnectBurst
		if burst <= 0 {
			burst = max(1, int(cfg.ConnectRate))
		}
		g.all = rate.NewLimiter(rate.Limit(cfg.ConnectRate), burst)
		share := 1 - cfg.ResumeShare
		g.fresh = rate.NewLimiter(rate.Limit(cfg.ConnectRate*share), max(1, int(float64(burst)*share)))
	}
	return g
}

// Admit admits one connection (resuming: the request carries a cursor) and returns
// its release, or ok=false with a jittered retry hint.
func (g *Gate) Admit(resuming bool, now time.Time) (release func(), retryAfter time.Duration, ok bool) {
	limit := int64(g.cfg.MaxConnections)
	if !resuming {
		limit = g.freshMax
	}
	if limit > 0 {
		if n := g.active.Add(1); n > limit {
			g.active.Add(-1)
			return nil, g.refuse(resuming, 0), false
		}
	} else {
		g.active.Add(1)
	}
	if wait, ok := g.takeToken(resuming, now); !ok {
		g.active.Add(-1)
		return nil, g.refuse(resuming, wait), false
	}
	var once sync.Once
	return func() { once.Do(func() { g.active.Add(-1) }) }, 0, true
}

// takeToken charges the rate: resuming sessions the shared bucket only, new ones both.
func (g *Gate) takeToken(resuming bool, now time.Time) (time.Duration, bool) {
	if g.all == nil {
		return 0, true
	}
	g.mu.Lock()
	defer g.mu.Unlock() // reservations never wait: no I/O or blocking under the lock
	ra := g.all.ReserveN(now, 1)
	if d := ra.DelayFrom(now); d > 0 {
		ra.CancelAt(now)
		return d, false
	}
	if !resuming {
		rf := g.fresh.ReserveN(now, 1)
		if d := rf.DelayFrom(now); d > 0 {
			rf.CancelAt(now)
			ra.CancelAt(now)
			return d, false
		}
	}
	return 0, true
}

func (g *Gate) refuse(resuming bool, wait time.Duration) time.Duration {
	if resuming {
		g.refusedResume.Add(1)
	} else {
		g.refusedNew.Add(1)
	}
	lo, hi := g.cfg.RetryMin, g.cfg.RetryMax
	return wait + lo + time.Duration(rand.Int64N(int64(hi-lo)+1))
}

// Active is the number of admitted connections not yet released.
func (g *Gate) Active() int64 { return g.active.Load() }

// Refused returns the refusals so far, of new and of resuming sessions.
func (g *Gate) Refused() (fresh, resuming uint64) { return g.refusedNew.Load(), g.refusedResume.Load() }
