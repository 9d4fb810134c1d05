package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sony/gobreaker/v2"

	"encore.app/realtime/protocol"
)

var _ Bus = (*Breaker)(nil)

// BreakerConfig configures NewBreaker. Zero values take the defaults.
type BreakerConfig struct {
	// CallTimeout bounds one Publish or Info (default 1s). A call that takes longer fails
	// with ErrUnavailable and counts as a failure. Replay is bounded by its caller.
	CallTimeout time.Duration
	// Failures is how many consecutive failures open the circuit (default 3).
	Failures uint32
	// OpenFor is how long the circuit stays open before one probe call is let through
	// (default 2s). A successful probe closes it; a failed one opens it again.
	OpenFor time.Duration
	// Connected, when set, is asked before each call; false fails the call at once as
	// unavailable (a disconnected NATS client would only buffer the call until its
	// timeout). For JetStream: (*JetStream).Conn().IsConnected.
	Connected func() bool
	// OnStateChange is told every transition ("closed", "open", "half-open").
	OnStateChange func(from, to string)
}

// Breaker is a Bus wrapper with a circuit breaker (sony/gobreaker) around Publish, Info
// and Replay: when the bus is down, calls fail fast with an error wrapping
// ErrUnavailable instead of waiting for timeouts, and the circuit closes by itself once
// a probe call succeeds. Only ErrUnavailable failures (and CallTimeout) count; invalid
// events or a caller's cancelled context do not open the circuit. Subscribe and Close
// pass through: the live subscription has its own reconnect loop.
//
// Safe for concurrent use. Close closes the wrapped bus.
type Breaker struct {
	b   Bus
	cfg BreakerConfig
	cb  *gobreaker.TwoStepCircuitBreaker[struct{}]
}

// ErrCircuitOpen is wrapped (with ErrUnavailable) by calls refused by an open circuit.
var ErrCircuitOpen = errors.New("circuit open")

// NewBreaker wraps b.
func NewBreaker(b Bus, cfg BreakerConfig) *Breaker {
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = time.Second
	}
	if cfg.Failures == 0 {
		cfg.Failures = 3
	}
	if cfg.OpenFor <= 0 {
		cfg.OpenFor = 2 * time.Second
	}
	k := &Breaker{b: b, cfg: cfg}
	st := gobreaker.Settings{
		Name:        "bus",
		MaxRequests: 1,
		Timeout:     cfg.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.Failures },
		IsExcluded:  func(err error) bool { return errors.Is(err, context.Canceled) },
	}
	if f := cfg.OnStateChange; f != nil {
		st.OnStateChange = func(_ string, from, to gobreaker.State) { f(from.String(), to.String()) }
	}
	k.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](st)
	return k
}

// The circuit's states, as State reports them (gobreaker's names) and the stream
// engine's Snapshot.Breaker carries them to the dashboard.
const (
	BreakerClosed   = "closed"    // calls pass
	BreakerOpen     = "open"      // calls fail fast
	BreakerHalfOpen = "half-open" // one probe passes
)

// State is the circuit's state: BreakerClosed, BreakerOpen or BreakerHalfOpen.
func (k *Breaker) State() string { return k.cb.State().String() }

// Unwrap returns the wrapped bus.
func (k *Breaker) Unwrap() Bus { return k.b }

// call runs fn through the breaker. timeout > 0 bounds it.
func (k *Breaker) call(ctx context.Context, op string, timeout time.Duration, fn func(context.Context) error) error {
	done, err := k.cb.Allow()
	if err != nil {
		return fmt.Errorf("bus: %s: %w: %w", op, ErrUnavailable, ErrCircuitOpen)
	}
	if k.cfg.Connected != nil && !k.cfg.Connected() {
		err := fmt.Errorf("bus: %s: %w: not connected", op, ErrUnavailable)
		done(err)
		return err
	}
	cctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	err = fn(cctx)
	switch {
	case err == nil:
		done(nil)
	case ctx.Err() != nil:
		done(context.Canceled) // the caller gave up: says nothing about the bus
	case errors.Is(err, ErrUnavailable):
		done(err)
	case cctx.Err() != nil:
		err = fmt.Errorf("bus: %s: %w: no answer within %v: %w", op, ErrUnavailable, timeout, err)
		done(err)
	default:
		done(nil) // bad input, closed bus: the bus answered
	}
	return err
}

// Publish implements Bus, bounded by CallTimeout.
func (k *Breaker) Publish(ctx context.Context, evs []*protocol.Event) (acks []Ack, err error) {
	err = k.call(ctx, "publish", k.cfg.CallTimeout, func(ctx context.Context) error {
		acks, err = k.b.Publish(ctx, evs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return acks, nil
}

// Info implements Bus, bounded by CallTimeout.
func (k *Breaker) Info(ctx context.Context) (info Info, err error) {
	err = k.call(ctx, "info", k.cfg.CallTimeout, func(ctx context.Context) error {
		info, err = k.b.Info(ctx)
		return err
	})
	return info, err
}

// Replay implements Bus; its duration is the caller's business (ctx).
func (k *Breaker) Replay(ctx context.Context, channels []string, after, upTo uint64, fn func(*protocol.Event) error) error {
	return k.call(ctx, "replay", 0, func(ctx context.Context) error {
		return k.b.Replay(ctx, channels, after, upTo, fn)
	})
}

// Subscribe implements Bus (passes through).
func (k *Breaker) Subscribe(ctx context.Context, after uint64, h Handler) error {
	return k.b.Subscribe(ctx, after, h)
}

// Close implements Bus: it closes the wrapped bus.
func (k *Breaker) Close() error { return k.b.Close() }
