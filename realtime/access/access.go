// Package access holds who holds a connection (Identity) and how a refused connect is
// answered (AuthError): the leaf that the engine (realtime/stream), tokens
// (realtime/auth) and limits (realtime/limits) share, so that neither of the last two
// links the engine, the bus or nats-server.
package access

import (
	"time"

	"encore.app/realtime/protocol"
)

// Identity is who holds a connection.
type Identity struct {
	// UserID is "" for an anonymous connection.
	UserID string
	// Channels the credential allows besides the public and the user's own private
	// channels (exact names or globs).
	Channels []string
	// ExpiresAt, when set, is when the credential stops being valid.
	ExpiresAt time.Time
}

// AuthError refuses a connect or a poll and chooses its answer.
type AuthError struct {
	Status     int           // HTTP status: 401, 403, 429, 503
	RetryAfter time.Duration // for 429/503
	Msg        string
	// Close, when set, answers a WebSocket request by upgrading and closing at once
	// with this code (and RetryAfter as "retry=<ms>"), because browsers cannot read the
	// HTTP status of a refused upgrade. Other requests get Status.
	Close protocol.CloseCode
	// Reason names the refusal in metrics (one of the Refuse* constants; default
	// RefuseAuth).
	Reason string
}

func (e *AuthError) Error() string { return e.Msg }

// Refusal reasons for connections refused before or at upgrade (the engine's
// "refusals" figures). Unknown names count as RefuseAuth.
const (
	RefuseAuth        = "auth"
	RefuseDraining    = "draining"
	RefuseUpgrade     = "upgrade"
	RefuseRateLimited = "rate_limited"
	RefuseTooMany     = "too_many_connections"
	RefuseOverloaded  = "overloaded"
	RefuseOrigin      = "origin"
)
