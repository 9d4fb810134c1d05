package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"encore.app/realtime/auth"
	"encore.app/realtime/bus"
	"encore.app/realtime/limits"
	"encore.app/realtime/stream"
)

// securityOptions are the auth, limit and breaker settings (docs/security.md).
type securityOptions struct {
	tokenKeys, publicPrefixes, clientIPHeader string
	devMint                                   bool
	maxConnsPerUser                           int
	connCapTTL                                time.Duration
	connectRate, ipConnectRate                float64
	connectBurst, ipConnectBurst              int
	maxConnections                            int
	admitRate, resumeShare                    float64
	msgRate                                   float64
	msgBurst, maxFrameBytes, maxChannelLength int
	busTimeout, breakerOpen                   time.Duration
	breakerFailures                           int
}

// registerSecurityFlags adds the security flags to fs; each has an environment variable.
func registerSecurityFlags(fs *flag.FlagSet, o *securityOptions) {
	env := func(name, def string) string {
		if v, ok := os.LookupEnv(name); ok {
			return v
		}
		return def
	}
	str := func(p *string, name, ev, def, help string) { fs.StringVar(p, name, env(ev, def), help+" ($"+ev+")") }
	num := func(p *int, name, ev string, def int, help string) {
		if n, err := strconv.Atoi(env(ev, "")); err == nil {
			def = n
		}
		fs.IntVar(p, name, def, help+" ($"+ev+")")
	}
	flt := func(p *float64, name, ev string, def float64, help string) {
		if n, err := strconv.ParseFloat(env(ev, ""), 64); err == nil {
			def = n
		}
		fs.Float64Var(p, name, def, help+" ($"+ev+")")
	}
	dur := func(p *time.Duration, name, ev string, def time.Duration, help string) {
		if d, err := time.ParseDuration(env(ev, "")); err == nil {
			def = d
		}
		fs.DurationVar(p, name, def, help+" ($"+ev+")")
	}
	devMint, _ := strconv.ParseBool(env("REALTIME_DEV_MINT", "false"))
	str(&o.tokenKeys, "token-keys", "REALTIME_TOKEN_KEYS", "", "subscriber token keys \"kid:secret,...\" (HS256, >=32-byte secrets; the first signs); empty = dev mode: anonymous, public channels only")
	str(&o.publicPrefixes, "public-prefixes", "REALTIME_PUBLIC_PREFIXES", "public:,public.", "comma-separated channel prefixes everyone may read; \"*\" = every channel except user:<id>...")
	fs.BoolVar(&o.devMint, "dev-mint", devMint, "serve GET /v2/realtime/dev/token?user=&ttl=&channels= to loopback clients (development only) ($REALTIME_DEV_MINT)")
	str(&o.clientIPHeader, "client-ip-header", "REALTIME_CLIENT_IP_HEADER", "", "behind a trusted proxy: header whose last address is the client (e.g. X-Forwarded-For); empty = the socket address")
	num(&o.maxConnsPerUser, "max-conns-per-user", "REALTIME_MAX_CONNS_PER_USER", 10, "concurrent connections per user across the cluster (NATS KV); 0 disables")
	dur(&o.connCapTTL, "conn-cap-ttl", "REALTIME_CONN_CAP_TTL", 30*time.Second, "a dead instance's connections stop counting after this")
	flt(&o.connectRate, "connect-rate", "REALTIME_CONNECT_RATE", 1, "stream connect attempts per second per user; 0 disables")
	num(&o.connectBurst, "connect-burst", "REALTIME_CONNECT_BURST", 10, "burst of connect attempts per user")
	flt(&o.ipConnectRate, "ip-connect-rate", "REALTIME_IP_CONNECT_RATE", 20, "stream connect attempts per second per client IP; 0 disables")
	num(&o.ipConnectBurst, "ip-connect-burst", "REALTIME_IP_CONNECT_BURST", 200, "burst of stream connect attempts per client IP (offices behind one NAT reconnect together)")
	num(&o.maxConnections, "max-connections", "REALTIME_MAX_CONNECTIONS", 0, "open connections of this instance; 0 = unbounded")
	flt(&o.admitRate, "admit-rate", "REALTIME_ADMIT_RATE", 0, "connections admitted per second by this instance; 0 = unbounded")
	flt(&o.resumeShare, "resume-share", "REALTIME_RESUME_SHARE", 0.2, "share of -max-connections and -admit-rate reserved for resuming sessions")
	flt(&o.msgRate, "client-msg-rate", "REALTIME_CLIENT_MSG_RATE", 10, "frames per second a connection may send; -1 disables")
	num(&o.msgBurst, "client-msg-burst", "REALTIME_CLIENT_MSG_BURST", 50, "burst of client frames")
	num(&o.maxFrameBytes, "max-frame-bytes", "REALTIME_MAX_FRAME_BYTES", 64<<10, "largest client frame (bigger closes 1009)")
	num(&o.maxChannelLength, "max-channel-length", "REALTIME_MAX_CHANNEL_LENGTH", 128, "longest channel name")
	dur(&o.busTimeout, "bus-timeout", "REALTIME_BUS_TIMEOUT", time.Second, "bound of one bus publish or info call (circuit breaker)")
	num(&o.breakerFailures, "breaker-failures", "REALTIME_BREAKER_FAILURES", 3, "consecutive bus failures that open the circuit")
	dur(&o.breakerOpen, "breaker-open", "REALTIME_BREAKER_OPEN", 2*time.Second, "how long the open circuit fails fast before probing")
}

// security is the wired auth, limits and breaker of one server.
type security struct {
	bus   *bus.Breaker // the engine's bus: the JetStream behind a circuit breaker
	keys  *auth.Keys
	cap   *limits.ConnCap
	mint  bool
	log   *slog.Logger
	guard *limits.Guard
}

// newSecurity sets cfg's hooks and limits and wraps b in the circuit breaker.
func newSecurity(ctx context.Context, o *securityOptions, cfg *stream.Config, b *bus.JetStream, log *slog.Logger) (*security, error) {
	s := &security{log: log, mint: o.devMint}
	a := &auth.Authenticator{Policy: auth.Policy{PublicPrefixes: splitComma(o.publicPrefixes)}}
	if a.Policy.PublicPrefixes == nil {
		a.Policy.PublicPrefixes = []string{}
	}
	if o.tokenKeys != "" {
		keys, err := auth.ParseKeys(o.tokenKeys)
		if err != nil {
			return nil, fmt.Errorf("-token-keys: %w", err)
		}
		a.Keys = keys
	} else {
		a.AllowAnonymous = true
		log.Warn("DEV MODE: no -token-keys set: connections are anonymous and read public channels only " +
			"(prefixes " + o.publicPrefixes + "; -public-prefixes '*' opens every non-private channel). " +
			"Set REALTIME_TOKEN_KEYS in production.")
		if o.devMint {
			a.Keys = auth.DevKeys()
			log.Warn("DEV MODE: -dev-mint with a throwaway key: GET /v2/realtime/dev/token?user=<id> mints tokens valid until restart")
		}
	}
	if o.devMint && o.tokenKeys != "" {
		log.Warn("-dev-mint is on with real keys: loopback clients can mint tokens for any user. Never in production.")
	}
	s.keys = a.Keys
	cfg.Authenticate, cfg.Authorize, cfg.Reauthenticate = a.Hooks()

	g := &limits.Guard{}
	if o.ipConnectRate > 0 {
		g.IPRate = limits.NewKeyedLimiter(o.ipConnectRate, o.ipConnectBurst, 0, nil)
	}
	if o.connectRate > 0 {
		g.UserRate = limits.NewKeyedLimiter(o.connectRate, o.connectBurst, 0, nil)
	}
	if o.maxConnections > 0 || o.admitRate > 0 {
		g.Gate = limits.NewGate(limits.GateConfig{MaxConnections: o.maxConnections, ConnectRate: o.admitRate, ResumeShare: o.resumeShare})
	}
	if h := o.clientIPHeader; h != "" {
		g.ClientIP = func(r *http.Request) string {
			if v := r.Header.Get(h); v != "" {
				parts := strings.Split(v, ",")
				return strings.TrimSpace(parts[len(parts)-1])
			}
			return limits.RemoteIP(r)
		}
	}
	if o.maxConnsPerUser > 0 {
		js, err := jetstream.New(b.Conn())
		if err != nil {
			return nil, err
		}
		cc, err := limits.NewConnCap(ctx, js, limits.ConnCapConfig{Max: o.maxConnsPerUser, TTL: o.connCapTTL, Instance: cfg.Instance, Logger: log})
		if err != nil {
			return nil, err
		}
		g.Cap, s.cap = cc, cc
	}
	s.guard = g
	cfg.Authenticate = g.Authenticate(cfg.Authenticate)
	cfg.Admit = g.Admit
	cfg.ClientMessageRate, cfg.ClientMessageBurst = o.msgRate, o.msgBurst
	cfg.MaxFrameBytes, cfg.MaxChannelLength = int64(o.maxFrameBytes), o.maxChannelLength

	s.bus = bus.NewBreaker(b, bus.BreakerConfig{
		CallTimeout: o.busTimeout, Failures: uint32(max(1, o.breakerFailures)), OpenFor: o.breakerOpen,
		Connected: b.Conn().IsConnected,
		OnStateChange: func(from, to string) {
			log.Warn("bus circuit breaker", "from", from, "to", to)
		},
	})
	return s, nil
}

// mount adds the dev token endpoint when enabled.
func (s *security) mount(mux *http.ServeMux) {
	if s.mint && s.keys != nil {
		mux.HandleFunc("GET /v2/realtime/dev/token", s.serveDevToken)
	}
}

// serveDevToken mints a token for loopback clients: ?user=42&ttl=1h&channels=a,b.
func (s *security) serveDevToken(w http.ResponseWriter, r *http.Request) {
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
	tok, err := s.keys.Mint(q.Get("user"), ttl, splitComma(q.Get("channels")))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(map[string]any{"token": tok, "expiresAt": time.Now().Add(ttl).UnixMilli()})
}

func (s *security) close() {
	if s.cap != nil {
		s.cap.Close()
	}
}

// tokenCommand is `realtimed token`: mint a subscriber token with the configured keys.
func tokenCommand(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("realtimed token", flag.ContinueOnError)
	keys := fs.String("keys", os.Getenv("REALTIME_TOKEN_KEYS"), "token keys \"kid:secret,...\" (the first signs) ($REALTIME_TOKEN_KEYS)")
	user := fs.String("user", "", "user id (sub claim), required")
	ttl := fs.Duration("ttl", time.Hour, "validity")
	channels := fs.String("channels", "", "comma-separated channels or globs the user may read (besides public and user:<id>:...)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *keys == "" {
		return errors.New("token: -keys or $REALTIME_TOKEN_KEYS required")
	}
	k, err := auth.ParseKeys(*keys)
	if err != nil {
		return err
	}
	tok, err := k.Mint(*user, *ttl, splitComma(*channels))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(out, tok)
	return err
}
