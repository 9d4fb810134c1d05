// Package server is the assembly of the realtime server: from one Options struct (one
// set of defaults, one Validate) it builds the backend (event bus and the stores of
// flags, fleet health and the connection cap), the bus circuit breaker, the stream
// engine, token auth and connect limits, the flag store and its streaming switch,
// browser and fleet health, the monitoring API, the dashboard and the demo page, and
// serves them on the routes of Routes.
//
// Both shells use it and nothing else: cmd/realtimed turns flags and environment
// variables into Options (RegisterFlags) and serves Server on a net/http server; the
// Encore service roots (realtime, flags, monitoring, dashboard) turn the Encore config
// and secrets into the same Options (FromEncore) and declare one endpoint per route,
// each handing the request to Server. So a feature exists in both shells or in
// neither: a new endpoint is a route here plus one //encore:api line
// (TestEncoreEndpointsMatchRoutes), a new setting is one tagged field of Options, a
// new bus kind is a case of openBackend.
//
// The package imports no encore.dev code; go test covers it.
package server
