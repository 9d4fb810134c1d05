package stream

import "errors"

// Readiness and the first phase of a drain, for the server's /readyz and its drain
// (Shutdown is the second phase: tell every connection to move, then close).

// Errors of Ready.
var (
	ErrNotStarted = errors.New("stream not started")
	ErrDraining   = errors.New("draining")
	ErrClosed     = errors.New("stream closed")
)

// StopAccepting begins a drain: from now on new streams and polls are answered 503 +
// Retry-After, while open connections and waiting polls go on until Shutdown.
// Idempotent.
func (e *Engine) StopAccepting() { e.draining.Store(true) }

// Ready reports whether the engine takes new connections: nil once started, until a
// drain begins (ErrDraining) or it is closed (ErrClosed).
func (e *Engine) Ready() error {
	switch {
	case e.ctx.Err() != nil:
		return ErrClosed
	case e.draining.Load():
		return ErrDraining
	case !e.started.Load():
		return ErrNotStarted
	}
	return nil
}
