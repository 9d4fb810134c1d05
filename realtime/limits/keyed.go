package limits

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// KeyedLimiter is one token bucket per key (rate per second, burst), for connect
// attempts per user or per IP. The map is bounded and expiring: two generations that
// rotate every refill period (burst/rate, at least 1s) or when the current one holds
// MaxKeys keys, so a key idle for two periods is forgotten (its bucket would be full
// again anyway) and memory stays under 2*MaxKeys buckets. A rotation forced by size
// forgets buckets early (lenient, never blocking). Safe for concurrent use.
type KeyedLimiter struct {
	// immutable
	limit   rate.Limit
	burst   int
	maxKeys int
	period  time.Duration
	now     func() time.Time

	mu        sync.Mutex // guards cur, prev, rotated; never held across a limiter call
	cur, prev map[string]*rate.Limiter
	rotated   time.Time

	forcedRotations atomic.Uint64
}

// NewKeyedLimiter returns a limiter of perSecond attempts per key with burst. maxKeys
// bounds one generation (default 100,000). now is the clock (time.Now when nil).
func NewKeyedLimiter(perSecond float64, burst, maxKeys int, now func() time.Time) *KeyedLimiter {
	if burst < 1 {
		burst = 1
	}
	if maxKeys <= 0 {
		maxKeys = 100_000
	}
	if now == nil {
		now = time.Now
	}
	period := time.Second
	if perSecond > 0 {
		period = max(period, time.Duration(float64(burst)/perSecond*float64(time.Second)))
	}
	return &KeyedLimiter{limit: rate.Limit(perSecond), burst: burst, maxKeys: maxKeys, period: period, now: now,
		cur: map[string]*rate.Limiter{}, prev: map[string]*rate.Limiter{}, rotated: now()}
}

// Allow charges one attempt to key. When refused it returns how long until the next
// attempt would pass (the Retry-After).
func (l *KeyedLimiter) Allow(key string) (ok bool, retryAfter time.Duration) {
	now := l.now()
	lim := l.get(key, now)
	r := lim.ReserveN(now, 1)
	if !r.OK() {
		return false, l.period
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

func (l *KeyedLimiter) get(key string, now time.Time) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if idle := now.Sub(l.rotated); idle >= l.period {
		l.rotateLocked(now)
		if idle >= 2*l.period { // nothing rotated for two periods: every bucket is full again
			l.prev = map[string]*rate.Limiter{}
		}
	}
	if lim, ok := l.cur[key]; ok {
		return lim
	}
	lim, ok := l.prev[key]
	if ok {
		delete(l.prev, key)
	} else {
		lim = rate.NewLimiter(l.limit, l.burst)
	}
	if len(l.cur) >= l.maxKeys {
		l.forcedRotations.Add(1)
		l.rotateLocked(now)
	}
	l.cur[key] = lim
	return lim
}

func (l *KeyedLimiter) rotateLocked(now time.Time) {
	l.prev, l.cur = l.cur, make(map[string]*rate.Limiter, len(l.cur))
	l.rotated = now
}

// Len is the number of buckets held (both generations).
func (l *KeyedLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.cur) + len(l.prev)
}
