package stream

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// extensions is the engine's state for presence and history (presence.go,
// history.go): the goroutines that answer requests needing I/O, the connections with
// a request in flight, the presence hub and the figures. The Engine holds one; it is
// set up by New and waited for by Close.
type extensions struct {
	// immutable after init
	presence Presence // nil: presence is off
	history  *prometheus.CounterVec
	presReqs *prometheus.CounterVec

	hub presenceHub

	wg       sync.WaitGroup // request goroutines
	mu       sync.Mutex
	inflight map[*Client]int // requests running, per connection
}

// maxInflight bounds the presence and history requests one connection may have
// running; more are answered rate_limited (the frame rate bounds them too).
const maxInflight = 4

func (x *extensions) init(e *Engine) {
	x.presence = e.cfg.Presence
	x.inflight = map[*Client]int{}
	x.hub.init(e)
	x.history = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "realtime_history_requests_total",
		Help: "History requests (frames and HTTP), by answer: memory, bus, mixed, refused, unavailable."}, []string{"result"})
	x.presReqs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "realtime_presence_requests_total",
		Help: "Presence snapshot requests (frames and HTTP), by answer: ok, refused, unavailable."}, []string{"result"})
	e.registry.MustRegister(x.history, x.presReqs)
}

// begin counts a request of c; false when c runs maxInflight already.
func (x *extensions) begin(c *Client) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.inflight[c] >= maxInflight {
		return false
	}
	x.inflight[c]++
	return true
}

func (x *extensions) end(c *Client) {
	x.mu.Lock()
	if x.inflight[c]--; x.inflight[c] <= 0 {
		delete(x.inflight, c)
	}
	x.mu.Unlock()
}

// run runs fn on a goroutine that Close waits for.
func (x *extensions) run(fn func()) {
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		fn()
	}()
}

func (x *extensions) wait() { x.wg.Wait() }
