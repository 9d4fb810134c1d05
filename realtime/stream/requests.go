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
	inflight map[*Client]struct{} // connections with a request running
}

func (x *extensions) init(e *Engine) {
	x.presence = e.cfg.Presence
	x.inflight = map[*Client]struct{}{}
	x.hub.init(e)
	x.history = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "realtime_history_requests_total",
		Help: "History requests (frames and HTTP), by answer: memory, bus, mixed, refused, unavailable."}, []string{"result"})
	x.presReqs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "realtime_presence_requests_total",
		Help: "Presence snapshot requests (frames and HTTP), by answer: ok, refused, unavailable."}, []string{"result"})
	e.registry.MustRegister(x.history, x.presReqs)
}

// begin marks c as running a request; false when it already runs one.
func (x *extensions) begin(c *Client) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, busy := x.inflight[c]; busy {
		return false
	}
	x.inflight[c] = struct{}{}
	return true
}

func (x *extensions) end(c *Client) {
	x.mu.Lock()
	delete(x.inflight, c)
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
