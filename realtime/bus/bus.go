// Package bus carries every published event to every realtime instance, in one total
// order (the bus sequence), and keeps them for replay within retention.
//
// Bus is the interface the stream engine depends on. JetStream (bus_jetstream*.go) is
// backed by an embedded nats-server (default) or an external NATS cluster; events are
// stored on subject "<prefix>.<channel>" of one stream. Postgres (bus_postgres*.go)
// keeps them in a table of the application's database (realtime/pgmigrations), for
// deployments that have Postgres and no NATS. One contract suite (bustest.Run) runs
// against both.
package bus

import (
	"context"
	"errors"

	"encore.app/realtime/protocol"
)

// Errors returned by Bus implementations.
var (
	// ErrUnavailable: the bus cannot be reached (or its circuit is open).
	ErrUnavailable = errors.New("bus unavailable")
	// ErrClosed: the Bus was closed.
	ErrClosed = errors.New("bus closed")
)

// Ack is the bus's answer to one published event.
type Ack struct {
	ID        string `json:"id"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"` // the ID was already appended; Seq is the original's
}

// Info describes the stream.
type Info struct {
	Epoch    string // changes whenever the stream is (re)created
	FirstSeq uint64 // oldest retained sequence (0 or LastSeq+1 when empty)
	LastSeq  uint64 // newest sequence (0 when nothing was ever appended)
}

// Handler receives live events in sequence order. It must not block for long: it runs
// on the bus's delivery goroutine.
type Handler func(ev *protocol.Event)

// Bus is safe for concurrent use.
type Bus interface {
	// Publish appends events (their Channel set, ID optional: the bus assigns one when
	// empty) and returns one Ack per event, in order. An event whose ID was appended
	// before, within the dedup window, is not appended again (Ack.Duplicate). The TS
	// field is set by Publish (unix ms) when zero.
	Publish(ctx context.Context, evs []*protocol.Event) ([]Ack, error)

	// Subscribe delivers every event with sequence > after, then live events, in order,
	// to h until ctx is done or the Bus is closed. It returns once delivery is set up;
	// delivery runs on a goroutine owned by the Bus. Gaps (retention) are skipped.
	Subscribe(ctx context.Context, after uint64, h Handler) error

	// Replay calls fn for every retained event on one of channels with after < seq <= upTo,
	// in sequence order, and stops early if fn returns an error (which it returns).
	// It never waits for new events.
	Replay(ctx context.Context, channels []string, after, upTo uint64, fn func(*protocol.Event) error) error

	// Info returns the stream's epoch and sequence range.
	Info(ctx context.Context) (Info, error)

	// Close stops delivery and releases connections (and the embedded server, if any).
	Close() error
}
