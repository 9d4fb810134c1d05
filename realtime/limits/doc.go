// Package limits protects the stream from exhaustion: connect-rate token buckets per
// key (user, IP) in a bounded, expiring map (KeyedLimiter), a cluster-wide cap on
// concurrent connections per user kept in a NATS key-value bucket or a Postgres table
// (ConnCap: NewConnCap, NewConnCapPostgres), an
// admission gate that prefers resuming sessions over new ones under overload (Gate),
// and Guard, which plugs them into the stream engine's Authenticate and Admit hooks.
//
// Every refusal is a *access.AuthError that tells the client whether and when to retry
// (docs/security.md has the table). Token buckets come from golang.org/x/time/rate.
package limits
