package limits

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"encore.app/realtime/access"
	"encore.app/realtime/protocol"
)

// Guard plugs the limits into the stream engine: wrap Config.Authenticate with
// Authenticate and set Config.Admit to Admit. Nil fields are off. Set the fields before
// use; safe for concurrent use afterwards.
//
// Answers (access.AuthError):
//
//	per-IP connect rate   HTTP 429 + Retry-After, before the token is even checked
//	per-user connect rate HTTP 429 + Retry-After; WebSocket: close 4102 retry=<ms>
//	instance overloaded   HTTP 503 + Retry-After; WebSocket: close 4103 retry=<ms> (jittered)
//	per-user cap reached  HTTP 429 + Retry-After; WebSocket: close 4104 retry=<ms>
type Guard struct {
	IPRate   *KeyedLimiter
	UserRate *KeyedLimiter
	Gate     *Gate
	Cap      *ConnCap
	// CapRetry is the retry hint after a cap refusal (default 15s, plus up to 5s jitter):
	// a place frees up only when one of the user's connections ends.
	CapRetry time.Duration
	// ClientIP returns the address charged by IPRate (default: the host of RemoteAddr;
	// behind a proxy, supply one that reads the proxy's header).
	ClientIP func(*http.Request) string
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

func (g *Guard) now() time.Time {
	if g.Now != nil {
		return g.Now()
	}
	return time.Now()
}

// RemoteIP is the default ClientIP.
func RemoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Authenticate wraps next with the per-IP rate (before next) and the per-user rate
// (after it; anonymous users are charged by IP only). Only WebSocket connects are
// charged: long-polls (the same hook) are bounded by the engine's own poll caps
// (MaxPollsPerUser, MaxPollWaiters), and a poll per event batch must not eat the
// connect budget.
func (g *Guard) Authenticate(next func(*http.Request) (*access.Identity, error)) func(*http.Request) (*access.Identity, error) {
	return func(r *http.Request) (*access.Identity, error) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			return next(r)
		}
		if g.IPRate != nil {
			ip := RemoteIP(r)
			if g.ClientIP != nil {
				ip = g.ClientIP(r)
			}
			if ok, wait := g.IPRate.Allow(ip); !ok {
				return nil, &access.AuthError{Status: http.StatusTooManyRequests, RetryAfter: wait,
					Msg: "too many connection attempts from this address", Reason: access.RefuseRateLimited}
			}
		}
		id, err := next(r)
		if err != nil {
			return nil, err
		}
		if g.UserRate != nil && id.UserID != "" {
			if ok, wait := g.UserRate.Allow(id.UserID); !ok {
				return nil, &access.AuthError{Status: http.StatusTooManyRequests, RetryAfter: wait, Close: protocol.CloseRateLimited,
					Msg: "too many connection attempts for this user", Reason: access.RefuseRateLimited}
			}
		}
		return id, nil
	}
}

// Admit is stream.Config.Admit: the overload gate (resuming sessions first), then the
// cluster-wide per-user cap.
func (g *Guard) Admit(r *http.Request, id *access.Identity, resuming bool) (func(), error) {
	var gateRelease func()
	if g.Gate != nil {
		rel, wait, ok := g.Gate.Admit(resuming, g.now())
		if !ok {
			return nil, &access.AuthError{Status: http.StatusServiceUnavailable, RetryAfter: wait, Close: protocol.CloseOverloaded,
				Msg: "server busy", Reason: access.RefuseOverloaded}
		}
		gateRelease = rel
	}
	if g.Cap == nil || id == nil || id.UserID == "" {
		return gateRelease, nil
	}
	capRelease, n, err := g.Cap.Acquire(r.Context(), id.UserID)
	if err != nil {
		if gateRelease != nil {
			gateRelease()
		}
		if errors.Is(err, ErrCapReached) {
			retry := g.CapRetry
			if retry <= 0 {
				retry = 15 * time.Second
			}
			retry += time.Duration(rand.Int64N(int64(5 * time.Second)))
			return nil, &access.AuthError{Status: http.StatusTooManyRequests, RetryAfter: retry, Close: protocol.CloseTooMany,
				Msg: fmt.Sprintf("%d connections open for this user, limit %d", n, g.Cap.Max()), Reason: access.RefuseTooMany}
		}
		return nil, err
	}
	if gateRelease == nil {
		return capRelease, nil
	}
	return func() { capRelease(); gateRelease() }, nil
}
