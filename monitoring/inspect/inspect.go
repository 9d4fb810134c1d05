// Package inspect answers the operator console's connection inspector across the
// fleet: a Query (a user ID or a session) goes to every live instance, each answers
// with its matching connections (Answer, bounded), and the asker collects the answers
// for a short time (Result). Fleet health travels in snapshots (monitoring/health); a
// per-user lookup does not fit a snapshot, so it is asked for when needed.
//
// Asker is what the console needs; NATS implements it with request/reply on the bus's
// connection (every instance subscribes to one subject and answers the reply inbox),
// Postgres on the Postgres bus's database (the query a NOTIFY every instance LISTENs
// for, the answers rows of a table, each announced by a NOTIFY), LocalOnly for a
// backend that cannot reach the other instances.
package inspect

import (
	"context"
	"errors"
	"strings"

	"encore.app/realtime/stream"
)

// Bounds of a query and its answers.
const (
	// MaxMatch bounds Query.Match.
	MaxMatch = 256
	// MaxPerInstance bounds the connections one instance lists (Query.Limit).
	MaxPerInstance = 50
	// MaxAnswers bounds the answers one query collects (the aggregator's instance limit).
	MaxAnswers = 1024
)

// Anonymous as a Query.Match also matches the connections without a user (dev mode).
const Anonymous = "anonymous"

// ErrBadQuery is returned for an empty or oversized Match.
var ErrBadQuery = errors.New("inspect: bad query")

// Query asks for the connections of a user or a session.
type Query struct {
	// Match is a user ID or a session ID; Anonymous also matches anonymous connections.
	Match string `json:"match"`
	// Limit bounds the connections each instance lists (1..MaxPerInstance, default 20).
	Limit int `json:"limit,omitempty"`
}

// Normalize trims Match, bounds Limit and checks the query.
func (q *Query) Normalize() error {
	q.Match = strings.TrimSpace(q.Match)
	if q.Match == "" || len(q.Match) > MaxMatch {
		return ErrBadQuery
	}
	if q.Limit <= 0 {
		q.Limit = 20
	}
	q.Limit = min(q.Limit, MaxPerInstance)
	return nil
}

// Matches reports whether a connection of user with session answers q.
func (q Query) Matches(user, session string) bool {
	return user == q.Match || (session != "" && session == q.Match) || (q.Match == Anonymous && user == "")
}

// Answer is one instance's reply.
type Answer struct {
	Instance    string              `json:"instance"`
	Connections []stream.Connection `json:"connections"`
	// Matched counts every match on the instance (Connections lists at most the limit).
	Matched int `json:"matched"`
}

// Local answers a query on this instance.
type Local func(Query) Answer

// EngineLocal is the Local of an engine: its connections and waiting polls that match.
func EngineLocal(instance string, e *stream.Engine) Local {
	return func(q Query) Answer {
		conns, n := e.Connections(q.Matches, q.Limit)
		return Answer{Instance: instance, Connections: conns, Matched: n}
	}
}

// Result is the fleet's reply to a query.
type Result struct {
	// Answers, one per instance that answered in time, by instance name.
	Answers []Answer `json:"answers"`
	// Expected is how many instances were asked to answer (the live fleet); fewer
	// answers means some did not answer in time.
	Expected int `json:"expected"`
	// FleetWide is false when only this instance could be asked (LocalOnly).
	FleetWide bool `json:"fleetWide"`
}

// Asker asks the fleet. Safe for concurrent use.
type Asker interface {
	// Connections asks every instance and returns the answers that arrive before
	// expect of them did or ctx ends (an error only when nothing could be sent).
	Connections(ctx context.Context, q Query, expect int) (Result, error)
	// Close stops answering other instances' queries.
	Close() error
}

// LocalOnly asks this instance only.
type LocalOnly struct{ Local Local }

var _ Asker = LocalOnly{}

// Connections answers q from this instance.
func (l LocalOnly) Connections(_ context.Context, q Query, _ int) (Result, error) {
	if err := q.Normalize(); err != nil {
		return Result{}, err
	}
	return Result{Answers: []Answer{l.Local(q)}, Expected: 1}, nil
}

// Close does nothing.
func (LocalOnly) Close() error { return nil }
