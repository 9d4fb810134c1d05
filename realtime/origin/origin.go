// Package origin is the realtime server's one browser-origin policy. The stream, the
// long-poll and the flags read API check a request's Origin with the same Policy
// before doing anything else (no token is verified, no connect budget charged), answer
// allowed cross-origin requests with CORS headers (preflight included), and log
// refusals at a bounded rate. In dev mode the server also checks the Host header with
// it (AllowsHost), which closes DNS rebinding.
//
// The rules are those of coder/websocket's OriginPatterns, so the WebSocket library and
// this package can never disagree: a request without Origin (not a browser) is allowed;
// an Origin whose host equals the request's Host is allowed (same origin); otherwise
// the Origin's host ("app.example.com:5173") must match one of the patterns
// (path.Match syntax, case-insensitive: "*.example.com", "localhost:*"), or its
// "scheme://host" must match a pattern that contains "://".
package origin

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync/atomic"

	"golang.org/x/time/rate"
)

// ErrRefused is the error of Check for a foreign Origin.
var ErrRefused = errors.New("origin not allowed")

// Policy decides which browser origins may use the server. Immutable after New; safe
// for concurrent use.
type Policy struct {
	patterns []string // lower case
	log      *slog.Logger

	// Refusals are logged at most once a second after a burst of 5; the line after a
	// quiet spell says how many were left out.
	logLimit   *rate.Limiter
	suppressed atomic.Uint64
	refused    atomic.Uint64
}

// New returns the policy of patterns (nil or empty: same origin only). A pattern that
// path.Match cannot parse is an error. log receives refusals (nil: slog.Default()).
func New(patterns []string, log *slog.Logger) (*Policy, error) {
	if log == nil {
		log = slog.Default()
	}
	p := &Policy{log: log, logLimit: rate.NewLimiter(1, 5)}
	for _, pat := range patterns {
		pat = strings.ToLower(strings.TrimSpace(pat))
		if pat == "" {
			continue
		}
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("origin pattern %q: %w", pat, err)
		}
		p.patterns = append(p.patterns, pat)
	}
	return p, nil
}

// Patterns returns the allowed patterns (lower case), for the WebSocket library.
func (p *Policy) Patterns() []string { return append([]string(nil), p.patterns...) }

// Refused is the number of requests refused so far.
func (p *Policy) Refused() uint64 { return p.refused.Load() }

// Check reports whether r may be served: nil, or an error wrapping ErrRefused. It does
// not log: see Allow.
func (p *Policy) Check(r *http.Request) error {
	o := r.Header.Get("Origin")
	if o == "" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: %q is not an origin with a host", ErrRefused, o)
	}
	if strings.EqualFold(u.Host, r.Host) {
		return nil
	}
	if p.matches(u.Scheme, u.Host) {
		return nil
	}
	return fmt.Errorf("%w: %q for host %q", ErrRefused, u.Host, r.Host)
}

func (p *Policy) matches(scheme, host string) bool {
	host = strings.ToLower(host)
	for _, pat := range p.patterns {
		target := host
		if strings.Contains(pat, "://") {
			if scheme == "" {
				continue
			}
			target = strings.ToLower(scheme) + "://" + host
		}
		if ok, _ := path.Match(pat, target); ok {
			return true
		}
	}
	return false
}

// crossOrigin reports whether r carries an Origin other than its own host (a request
// CORS applies to).
func crossOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return false
	}
	u, err := url.Parse(o)
	return err != nil || !strings.EqualFold(u.Host, r.Host)
}

// Allow checks r and, when it is refused, answers 403 (a JSON error body), counts and
// logs the refusal (at a bounded rate, with the origin and path) and returns false.
// An allowed cross-origin request gets the CORS headers of an actual request (see
// CORS) when cors is true; the caller then serves it.
func (p *Policy) Allow(w http.ResponseWriter, r *http.Request, cors bool) bool {
	if err := p.Check(r); err != nil {
		p.refuse(r)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":"origin not allowed: add it to the server's allowed origins (-origins / Origins)","code":"forbidden_origin"}` + "\n"))
		return false
	}
	if cors {
		p.CORS(w, r)
	}
	return true
}

func (p *Policy) refuse(r *http.Request) {
	p.refused.Add(1)
	if !p.logLimit.Allow() {
		p.suppressed.Add(1)
		return
	}
	args := []any{"origin", r.Header.Get("Origin"), "host", r.Host, "path", r.URL.Path,
		"allowed", strings.Join(p.patterns, ",")}
	if n := p.suppressed.Swap(0); n > 0 {
		args = append(args, "notLogged", n)
	}
	p.log.Warn("refused a cross-origin request (add the origin to -origins / Origins if it is yours)", args...)
}

// CORS sets the headers of an allowed cross-origin actual request: the origin itself
// (never "*", so that cookies may be sent: credentials are allowed), Vary: Origin, and
// Retry-After exposed to scripts (clients read it on 429 and 503). Requests that are
// not cross-origin get only Vary. Call it after Check allowed r.
func (p *Policy) CORS(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Add("Vary", "Origin")
	if !crossOrigin(r) {
		return
	}
	h.Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Expose-Headers", "Retry-After")
}

// Preflight answers a CORS preflight (OPTIONS) for a GET endpoint: 204 with the
// allowed method and the requested headers for an allowed origin, 403 otherwise
// (logged like Allow). The browser caches the answer for 10 minutes.
func (p *Policy) Preflight(w http.ResponseWriter, r *http.Request) {
	if !p.Allow(w, r, true) {
		return
	}
	h := w.Header()
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
	if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
		h.Set("Access-Control-Allow-Headers", rh)
	}
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// AllowsHost reports whether a request's Host is one the server may answer in dev
// mode: a loopback address, "localhost" (or a name under .localhost), or a host an
// origin pattern allows. A DNS-rebinding page reaches a loopback server under its
// own name, which is none of these.
func (p *Policy) AllowsHost(host string) bool {
	name := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		name = h
	}
	name = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(name, "."), "["), "]")
	if ip := net.ParseIP(name); ip != nil {
		return ip.IsLoopback()
	}
	lname := strings.ToLower(name)
	if lname == "localhost" || strings.HasSuffix(lname, ".localhost") {
		return true
	}
	return p.matches("", host) || p.matches("", name)
}
