package main

import (
	"expvar"
	"flag"
	"net/http"
	"net/http/pprof"
	"os"
)

// pprofFlag registers -pprof ($REALTIME_PPROF): when set, the server also serves
// net/http/pprof under /debug/pprof/ and expvar (runtime.MemStats) at /debug/vars on
// its own listener. Off by default: profiles expose internals, keep it to loopback.
func pprofFlag(fs *flag.FlagSet) *bool {
	_, def := os.LookupEnv("REALTIME_PPROF")
	return fs.Bool("pprof", def, "serve /debug/pprof/ and /debug/vars (profiling; loopback only) ($REALTIME_PPROF)")
}

// mountPprof adds the profiling routes to mux.
func mountPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.Handle("GET /debug/vars", expvar.Handler())
}
