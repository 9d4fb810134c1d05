package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"encore.app/realtime/access"
	"encore.app/realtime/auth"
	"encore.app/realtime/limits"
	"encore.app/realtime/stream"
)

// Dev-mode keys, used only outside a hosted environment when no key is set, and
// logged loudly.
const (
	DevPublisherKey = "dev"
	DevAdminKey     = "dev-admin-key-change-me"
)

// newAuthenticator builds the token verifier and channel policy from the options. In
// dev mode (no token keys) anonymous connections read public channels; with DevMint a
// throwaway key signs the dev tokens.
func newAuthenticator(o *Options, log *slog.Logger) (*auth.Authenticator, error) {
	a := &auth.Authenticator{Policy: auth.Policy{PublicPrefixes: o.PublicPrefixes}}
	if a.Policy.PublicPrefixes == nil {
		a.Policy.PublicPrefixes = []string{}
	}
	if o.TokenKeys != "" {
		keys, err := auth.ParseKeys(o.TokenKeys)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.name("TokenKeys"), err)
		}
		a.Keys = keys
		if o.DevMint {
			log.Warn("dev token endpoint is on with real keys: loopback clients can mint tokens for any user. Never in production.")
		}
		return a, nil
	}
	a.AllowAnonymous = true
	log.Warn("DEV MODE: no token keys (" + o.name("TokenKeys") + "): connections are anonymous and read public channels only " +
		"(prefixes " + strings.Join(o.PublicPrefixes, ",") + "; \"*\" opens every non-private channel).")
	if o.DevMint {
		a.Keys = auth.DevKeys()
		log.Warn("DEV MODE: dev token endpoint with a throwaway key: GET /v2/realtime/dev/token?user=<id> mints tokens valid until restart")
	}
	return a, nil
}

// newGuard builds the connect limits: per-IP and per-user connect rates, the overload
// gate and the cluster-wide cap (cap may be nil).
func newGuard(o *Options, cc *limits.ConnCap) *limits.Guard {
	g := &limits.Guard{}
	if o.IPConnectRate > 0 {
		g.IPRate = limits.NewKeyedLimiter(o.IPConnectRate, o.IPConnectBurst, 0, nil)
	}
	if o.IPResumeRate > 0 {
		g.IPResumeRate = limits.NewKeyedLimiter(o.IPResumeRate, o.IPResumeBurst, 0, nil)
	}
	if o.ConnectRate > 0 {
		g.UserRate = limits.NewKeyedLimiter(o.ConnectRate, o.ConnectBurst, 0, nil)
	}
	if o.MaxConnections > 0 || o.AdmitRate > 0 {
		g.Gate = limits.NewGate(limits.GateConfig{MaxConnections: o.MaxConnections, ConnectRate: o.AdmitRate, ResumeShare: o.ResumeShare})
	}
	if h := o.ClientIPHeader; h != "" {
		g.ClientIP = func(r *http.Request) string {
			if v := r.Header.Get(h); v != "" {
				parts := strings.Split(v, ",")
				return strings.TrimSpace(parts[len(parts)-1])
			}
			return limits.RemoteIP(r)
		}
	}
	if cc != nil {
		g.Cap = cc
	}
	return g
}

// engineConfig is the engine's configuration from the options and the security hooks.
func engineConfig(o *Options, instance string, a *auth.Authenticator, g *limits.Guard, log *slog.Logger) stream.Config {
	cfg := stream.Config{
		Instance:          instance,
		HeartbeatInterval: o.Heartbeat,
		Writers:           o.Writers,
		QueueMaxEvents:    o.QueueEvents,
		QueueMaxBytes:     o.QueueBytes,
		QueueBudget:       int64(o.QueueBudgetMB) << 20,
		SendBuffer:        o.SendBuffer,
		BatchMaxEvents:    o.BatchMax,
		BatchWindow:       o.BatchWindow,
		BatchWindowMax:    o.BatchWindowMax,
		FrameBudget:       o.FrameBudget,
		// 0 means "the default" to the engine: 1 deflates every frame.
		CompressionThreshold: max(o.CompressThreshold, 1),
		MaxFrameBytes:        int64(o.MaxFrameBytes),
		MaxSubscriptions:     o.MaxSubscriptions,
		MaxChannelLength:     o.MaxChannelLength,
		WindowEvents:         o.Window,
		MaxPublishBytes:      int64(o.MaxPublishBytes),
		MaxPublishEvents:     o.MaxPublishEvents,
		MaxEventData:         o.MaxEventBytes,
		ClientMessageRate:    o.ClientMsgRate,
		ClientMessageBurst:   o.ClientMsgBurst,
		AcceptOrigins:        o.Origins,
		Logger:               log,
	}
	if o.CompressThreshold < 0 {
		cfg.CompressionThreshold = -1
	}
	cfg.PublisherKey = o.PublisherKey
	if cfg.PublisherKey == "" {
		if o.Env.Hosted {
			log.Warn("no publisher key (" + o.name("PublisherKey") + "): POST /v2/realtime/publish refuses every request; services publish to the realtime-events topic")
		} else {
			cfg.PublisherKey = DevPublisherKey
			log.Warn("DEV MODE: no publisher key (" + o.name("PublisherKey") + "): publishing accepts the key \"" + DevPublisherKey + "\"")
		}
	}
	cfg.Authenticate, cfg.Authorize, cfg.Reauthenticate = a.Hooks()
	cfg.Admit = g.Admit
	return cfg
}

// devTokens serves GET /v2/realtime/dev/token to loopback clients when DevMint is on:
// ?user=42&ttl=1h&channels=a,b mints a token; 404 otherwise.
type devTokens struct {
	keys *auth.Keys // nil: the endpoint is off
}

func (d devTokens) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d.keys == nil {
		http.NotFound(w, r)
		return
	}
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		http.Error(w, "dev token endpoint answers loopback clients only", http.StatusForbidden)
		return
	}
	q := r.URL.Query()
	ttl := time.Hour
	if v := q.Get("ttl"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 24*time.Hour {
			http.Error(w, "ttl: a duration up to 24h", http.StatusBadRequest)
			return
		}
		ttl = d
	}
	tok, err := d.keys.Mint(q.Get("user"), ttl, splitList(q.Get("channels")))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "expiresAt": time.Now().Add(ttl).UnixMilli()})
}

// VerifyToken checks a subscriber token with the server's keys (for the Encore auth
// handler): the identity it carries, or an *access.AuthError.
func (s *Server) VerifyToken(token string) (*access.Identity, error) {
	return s.authn.Verify(token)
}

// refuseHost answers a dev-mode request for a Host that is not this machine's (421).
func (s *Server) refuseHost(w http.ResponseWriter, r *http.Request) {
	s.hostLog.Do(func() {
		s.log.Warn("DEV MODE: refused a request for a foreign Host (DNS rebinding guard; add the name to -origins if it is yours)",
			"host", r.Host, "path", r.URL.Path)
	})
	http.Error(w, "dev mode answers loopback host names only (localhost, 127.0.0.1, [::1]) and the hosts of the allowed origins", http.StatusMisdirectedRequest)
}
