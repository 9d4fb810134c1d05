package server

import (
	"expvar"
	"net/http"
	"net/http/pprof"
	"strings"
)

// Route is one endpoint of the server. cmd/realtimed mounts every route on its mux;
// each route that is not standalone-only is declared once more as an //encore:api
// endpoint of Service (same method and path; raw endpoints hand the request to
// Server.ServeHTTP, typed ones call the same code). TestEncoreEndpointsMatchRoutes
// parses the service roots and checks that the two lists are the same.
type Route struct {
	Method string
	// Path in net/http.ServeMux syntax: {name} is one segment. "/" (with Method GET)
	// is everything no other route serves: a fallback path under Encore.
	Path string
	// Service is the Encore service that declares the endpoint, Endpoint its function.
	Service, Endpoint string
	// Typed: a typed Encore endpoint (JSON in and out) rather than a raw one.
	Typed bool
	// Only is "standalone: why" for a route the Encore app does not serve.
	Only string
	// Lasting says how long the route's requests may last, for the standalone server's
	// read and write timeouts (http.go): "" (ReadTimeout, WriteTimeout), "websocket"
	// (none: the engine's heartbeats and write deadlines), "poll" (the longest poll wait
	// on top) or "stream" (none: a response that lasts, like server-sent events).
	Lasting string

	handler func(*Server) http.Handler
	enabled func(*Options) bool // nil: always mounted
}

// Pattern is the route as a net/http.ServeMux pattern ("GET /v2/realtime/stream").
func (r Route) Pattern() string { return r.Method + " " + r.Path }

// EncorePath is the path of the route's //encore:api declaration: {name} becomes
// :name, and the root fallback "/" becomes "/!fallback".
func (r Route) EncorePath() string {
	if r.Path == "/" {
		return "/!fallback"
	}
	segs := strings.Split(r.Path, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}") {
			segs[i] = ":" + strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
		}
	}
	return strings.Join(segs, "/")
}

// Routes is the route table. Adding an endpoint is one line here (with its handler on
// the Server) and one //encore:api declaration in the owning service.
func Routes() []Route {
	h := func(f func(*Server) http.HandlerFunc) func(*Server) http.Handler {
		return func(s *Server) http.Handler { return f(s) }
	}
	pprofOn := func(o *Options) bool { return o.Pprof }
	const pprofWhy = "standalone: under Encore the profiles would be public endpoints of the app (-pprof)"
	return []Route{
		// realtime: the engine.
		{Method: "GET", Path: "/v2/realtime/stream", Service: "realtime", Endpoint: "Stream", Lasting: lastWebSocket, handler: h(func(s *Server) http.HandlerFunc { return s.eng.ServeStream })},
		{Method: "GET", Path: "/v2/realtime/poll", Service: "realtime", Endpoint: "Poll", Lasting: lastPoll, handler: h(func(s *Server) http.HandlerFunc { return s.eng.ServePoll })},
		{Method: "OPTIONS", Path: "/v2/realtime/poll", Service: "realtime", Endpoint: "PollPreflight", handler: h(func(s *Server) http.HandlerFunc { return s.eng.ServePollPreflight })},
		{Method: "POST", Path: "/v2/realtime/publish", Service: "realtime", Endpoint: "Publish", handler: h(func(s *Server) http.HandlerFunc { return s.eng.ServePublish })},
		{Method: "GET", Path: "/v2/realtime/metrics", Service: "realtime", Endpoint: "Metrics", handler: h(func(s *Server) http.HandlerFunc { return s.eng.ServeMetrics })},
		{Method: "GET", Path: "/v2/realtime/dev/token", Service: "realtime", Endpoint: "DevToken", handler: func(s *Server) http.Handler { return s.devTokens }},
		{Method: "GET", Path: "/metrics", Service: "realtime", Endpoint: "Prometheus", handler: func(s *Server) http.Handler { return s.prometheus }},
		{Method: "GET", Path: "/healthz", Service: "realtime", Endpoint: "Healthz", handler: h(func(s *Server) http.HandlerFunc { return serveHealthz })},
		{Method: "GET", Path: "/readyz", Service: "realtime", Endpoint: "Readyz", handler: h(func(s *Server) http.HandlerFunc { return s.serveReadyz })},
		{Method: "GET", Path: "/", Service: "realtime", Endpoint: "Demo", handler: func(s *Server) http.Handler { return s.demo }},

		// flags: the flag API (flags/flag.Handler).
		{Method: "GET", Path: "/v2/flags", Service: "flags", Endpoint: "UserFlags", handler: func(s *Server) http.Handler { return s.flags.read }},
		{Method: "OPTIONS", Path: "/v2/flags", Service: "flags", Endpoint: "UserFlagsPreflight", handler: func(s *Server) http.Handler { return s.flags.preflight }},
		{Method: "GET", Path: "/v2/flags/admin", Service: "flags", Endpoint: "ListFlags", handler: func(s *Server) http.Handler { return s.flags.admin }},
		{Method: "PUT", Path: "/v2/flags/admin/{name}", Service: "flags", Endpoint: "ChangeFlag", handler: func(s *Server) http.Handler { return s.flags.admin }},
		{Method: "GET", Path: "/v2/flags/audit", Service: "flags", Endpoint: "Audit", handler: func(s *Server) http.Handler { return s.flags.admin }},

		// monitoring: the fleet (typed under Encore, so other services can call them).
		{Method: "GET", Path: "/v2/monitoring/overview", Service: "monitoring", Endpoint: "Overview", Typed: true, handler: func(s *Server) http.Handler { return s.mon.api }},
		{Method: "GET", Path: "/v2/monitoring/series", Service: "monitoring", Endpoint: "Series", Typed: true, handler: func(s *Server) http.Handler { return s.mon.api }},

		// dashboard.
		{Method: "GET", Path: "/dashboard", Service: "dashboard", Endpoint: "Page", handler: h(func(s *Server) http.HandlerFunc { return s.mon.dash.Page })},
		{Method: "GET", Path: "/dashboard/events", Service: "dashboard", Endpoint: "Events", Lasting: lastStream, handler: h(func(s *Server) http.HandlerFunc { return s.mon.dash.Events })},
		{Method: "POST", Path: "/dashboard/login", Service: "dashboard", Endpoint: "Login", handler: h(func(s *Server) http.HandlerFunc { return s.mon.dash.Login })},
		{Method: "POST", Path: "/dashboard/logout", Service: "dashboard", Endpoint: "Logout", handler: h(func(s *Server) http.HandlerFunc { return s.mon.dash.Logout })},
		{Method: "POST", Path: "/dashboard/publish", Service: "dashboard", Endpoint: "PublishTest", handler: h(func(s *Server) http.HandlerFunc { return s.mon.dash.Publish })},

		// Profiling, standalone only.
		{Method: "GET", Path: "/debug/pprof/", Only: pprofWhy, enabled: pprofOn, handler: h(func(*Server) http.HandlerFunc { return pprof.Index })},
		{Method: "GET", Path: "/debug/pprof/cmdline", Only: pprofWhy, enabled: pprofOn, handler: h(func(*Server) http.HandlerFunc { return pprof.Cmdline })},
		{Method: "GET", Path: "/debug/pprof/profile", Only: pprofWhy, enabled: pprofOn, Lasting: lastStream, handler: h(func(*Server) http.HandlerFunc { return pprof.Profile })},
		{Method: "GET", Path: "/debug/pprof/symbol", Only: pprofWhy, enabled: pprofOn, handler: h(func(*Server) http.HandlerFunc { return pprof.Symbol })},
		{Method: "GET", Path: "/debug/pprof/trace", Only: pprofWhy, enabled: pprofOn, Lasting: lastStream, handler: h(func(*Server) http.HandlerFunc { return pprof.Trace })},
		{Method: "GET", Path: "/debug/vars", Only: pprofWhy, enabled: pprofOn, handler: func(*Server) http.Handler { return expvar.Handler() }},
	}
}

// mount registers every enabled route on mux.
func (s *Server) mount(mux *http.ServeMux) {
	for _, r := range Routes() {
		if r.enabled != nil && !r.enabled(&s.opts) {
			continue
		}
		mux.Handle(r.Pattern(), r.handler(s))
	}
}
