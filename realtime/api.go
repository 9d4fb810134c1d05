package realtime

import "net/http"

// Every endpoint hands the request to the process's server.Server (server.Routes):
// the same handlers as cmd/realtimed, so the two shells cannot drift.

// Stream upgrades to the multiplexed event stream (docs/protocol.md). Public: the
// engine verifies the token itself (?token= or the rt_token cookie), so a refused
// browser gets a close code it can read, and dev mode admits anonymous readers of
// public channels as in the standalone server.
//
//encore:api public raw method=GET path=/v2/realtime/stream
func Stream(w http.ResponseWriter, req *http.Request) { Serve(w, req) }

// Poll is the long-polling fallback with the same channels, cursor, auth and limits as
// the stream (docs/protocol.md "Long-polling").
//
//encore:api public raw method=GET path=/v2/realtime/poll
func Poll(w http.ResponseWriter, req *http.Request) { Serve(w, req) }

// PollPreflight answers the CORS preflight of Poll for the allowed origins.
//
//encore:api public raw method=OPTIONS path=/v2/realtime/poll
func PollPreflight(w http.ResponseWriter, req *http.Request) { Serve(w, req) }

// Publish appends events to the bus for HTTP publishers (services publish to the
// Events topic instead): the publisher key as Authorization: Bearer or
// X-Publisher-Key, one event or {"events":[...]}, the engine's decoder and limits.
//
//encore:api public raw method=POST path=/v2/realtime/publish
func Publish(w http.ResponseWriter, req *http.Request) { Serve(w, req) }

// Metrics reports this instance's figures (JSON).
//
//encore:api public raw method=GET path=/v2/realtime/metrics
func Metrics(w http.ResponseWriter, req *http.Request) { Serve(w, req) }

// DevToken mints a token for a loopback client when DevMint is set (local only).
//
//encore:api public raw method=GET path=/v2/realtime/dev/token
func DevToken(w http.ResponseWriter, req *http.Request) { Serve(w, req) }

// Prometheus exports this instance's figures in the Prometheus text format.
//
//encore:api public raw method=GET path=/metrics
func Prometheus(w http.ResponseWriter, req *http.Request) { Serve(w, req) }

// Healthz answers "ok" while the process is alive (once the server is built).
//
//encore:api public raw method=GET path=/healthz
func Healthz(w http.ResponseWriter, req *http.Request) { Serve(w, req) }

// Readyz answers 200 "ready" while this instance should get new connections (bus
// connected, stream started, no drain), else 503 with the reason and Retry-After.
// Encore's platform has probes of its own; this one is for load balancers and
// monitors in front of a self-hosted app.
//
//encore:api public raw method=GET path=/readyz
func Readyz(w http.ResponseWriter, req *http.Request) { Serve(w, req) }

// Demo serves the demo page at / (and every GET no other endpoint serves).
//
//encore:api public raw method=GET path=/!fallback
func Demo(w http.ResponseWriter, req *http.Request) { Serve(w, req) }
