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
// neither, and later work plugs in at one place:
//
//   - a new endpoint is a line of Routes with its handler on Server, plus one
//     //encore:api declaration in the owning service, which
//     TestEncoreEndpointsMatchRoutes holds to the table (history and presence are two);
//   - a new setting is one tagged field of Options: the flag, the environment variable,
//     the Encore config key, its CUE default and docs/settings.md follow
//     (go generate ./server);
//   - a bus kind is a value of Options.Bus, a case of Validate, EffectiveBus and
//     openBackend returning its backend (bus, flag store, fleet health, connection cap,
//     presence store):
//     nats (embedded or external NATS JetStream and key-value buckets) and postgres
//     (tables of one database: PostgresURL standalone, the shell's Env.Postgres pool
//     under Encore); auto picks nats when a NATS URL is set, else postgres when there
//     is a database;
//     to answer the console's connection inspector across instances a backend also
//     implements fleetQuerier (console.go), else the inspector shows its own instance only;
//   - a check every published event must pass goes where both publish paths meet: the
//     engine's ValidateEvents, which HTTP publishes (DecodePublish) and the Encore topic
//     (Server.Publish) both call; the typed channels' payload validation
//     (ValidatePayloads) is its Config.CheckEvent.
//
// What protects the server sits here once for both shells: the key rules (a keyed
// server has every key; dev mode is loopback only: validate.go), the one origin policy
// of the stream, the poll and the flags API and the dev-mode Host check (server.go,
// parts.go, realtime/origin), the probes and the first phase of a drain (ready.go),
// and the standalone server's HTTP timeouts (http.go, HTTPServer).
//
// The package imports no encore.dev code; go test covers it.
package server
