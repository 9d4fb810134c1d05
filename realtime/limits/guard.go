package limits

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"time"

	"encore.app/realtime/access"
	"encore.app/realtime/protocol"
)

// Guard plugs the limits into the stream engine as Config.Admit (Admit), which the
// engine calls after the origin check and the token check, before the upgrade. Nil
// fields are off. Set the fields before use; safe for concurrent use afterwards.
//
// Who is charged what (docs/security.md "Many users behind one address"):
//
//   - an authenticated connect is charged to its user (UserRate), never to its address:
//     thousands of users behind one NAT each have their own budget;
//   - an anonymous connect (dev mode, public readers) is charged to its address: a new
//     session to IPRate, a resuming one (a valid cursor) to IPResumeRate, a separate
//     and larger budget, so that new sessions from an address never starve the
//     resumes that follow a network cut;
//   - then the overload gate (resuming sessions first) and the cluster-wide cap.
//
// Answers (access.AuthError):
//
//	per-IP connect rate   HTTP 429 + Retry-After; WebSocket: close 4102 retry=<ms>
//	per-user connect rate HTTP 429 + Retry-After; WebSocket: close 4102 retry=<ms>
//	instance overloaded   HTTP 503 + Retry-After; WebSocket: close 4103 retry=<ms> (jittered)
//	per-user cap reached  HTTP 429 + Retry-After; WebSocket: close 4104 retry=<ms>
type Guard struct {
	IPRate       *KeyedLimiter // new anonymous sessions per address
	IPResumeRate *KeyedLimiter // resuming anonymous sessions per address
	UserRate     *KeyedLimiter // connects per user, new or resuming
	Gate         *Gate
	Cap          *ConnCap
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

// rate charges one connect to the user's budget, or, anonymous, to the address's
// budget for new or for resuming sessions. Only stream connects come here: long-polls
// are bounded by the engine's own poll caps (MaxPollsPerUser, MaxPollWaiters), and a
// poll per event batch must not eat the connect budget.
func (g *Guard) rate(r *http.Request, id *access.Identity, resuming bool) error {
	if id != nil && id.UserID != "" {
		if g.UserRate == nil {
			return nil
		}
		if ok, wait := g.UserRate.Allow(id.UserID); !ok {
			return &access.AuthError{Status: http.StatusTooManyRequests, RetryAfter: wait, Close: protocol.CloseRateLimited,
				Msg: "too many connection attempts for this user", Reason: access.RefuseRateLimited}
		}
		return nil
	}
	lim, what := g.IPRate, "new connections"
	if resuming {
		lim, what = g.IPResumeRate, "resuming connections"
	}
	if lim == nil {
		return nil
	}
	ip := RemoteIP(r)
	if g.ClientIP != nil {
		ip = g.ClientIP(r)
	}
	if ok, wait := lim.Allow(ip); !ok {
		return &access.AuthError{Status: http.StatusTooManyRequests, RetryAfter: wait, Close: protocol.CloseRateLimited,
			Msg: "too many anonymous " + what + " from this address", Reason: access.RefuseRateLimited}
	}
	return nil
}

// Admit is stream.Config.Admit: the connect rates (see Guard), the overload gate
// (resuming sessions first), then the cluster-wide per-user cap. resuming is the
// engine's word that the request carries a valid cursor.
func (g *Guard) Admit(r *http.Request, id *access.Identity, resuming bool) (func(), error) {
	if err := g.rate(r, id, resuming); err != nil {
		return nil, err
	}
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
