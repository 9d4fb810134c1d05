package server

import (
	"context"
	"errors"
	"net/http"
	"strconv"
)

// Probes: /healthz says the process is alive, /readyz that this instance should get
// new connections. A drain (BeginDrain, then Shutdown) turns readiness off first.

func serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write([]byte("ok\n"))
}

// Ready reports whether the instance takes new connections: nil, or why not (the bus
// is disconnected or its circuit open, the stream not started, a drain begun).
func (s *Server) Ready() error {
	if s.draining.Load() {
		return errDraining
	}
	if err := s.eng.Ready(); err != nil {
		return err
	}
	if !s.be.Connected() {
		return errBusDown
	}
	if s.breaker.State() == "open" {
		return errBusOpen
	}
	return nil
}

var (
	errDraining = errors.New("draining")
	errBusDown  = errors.New("bus not connected")
	errBusOpen  = errors.New("bus circuit open (bus calls failing)")
)

// serveReadyz answers 200 "ready", or 503 with the reason and a Retry-After.
func (s *Server) serveReadyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	err := s.Ready()
	if err == nil {
		_, _ = w.Write([]byte("ready\n"))
		return
	}
	retry := 1
	if errors.Is(err, errDraining) {
		retry = max(1, int(s.opts.DrainDelay.Seconds()))
	}
	w.Header().Set("Retry-After", strconv.Itoa(retry))
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
}

// BeginDrain is the first phase of a drain: /readyz, new streams and new polls answer
// 503 + Retry-After from now on, so that a load balancer takes the instance out, while
// open connections and waiting polls go on. Shutdown is the second phase. Idempotent.
func (s *Server) BeginDrain() {
	if s.draining.CompareAndSwap(false, true) {
		s.log.Info("draining: not ready, new connections refused (503); open connections go on until shutdown")
	}
	if s.eng != nil {
		s.eng.StopAccepting()
	}
}

// drainContext is ctx bounded by DrainTimeout.
func (s *Server) drainContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.DrainTimeout)
}
