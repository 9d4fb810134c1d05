package presence

import (
	"context"
	"errors"
)

// ErrClosed is returned by a closed Store or Tracker.
var ErrClosed = errors.New("presence: closed")

// Summary is one instance's members of one channel: what the instance writes to the
// store and every follower of the channel reads.
type Summary struct {
	Channel  string `json:"ch"`
	Instance string `json:"i"`
	// Inc is the instance's incarnation (random per start): summaries of another
	// incarnation than the instance's live record are void.
	Inc string `json:"inc"`
	// V orders one instance's summaries of one channel (it grows with every write of
	// an incarnation): a follower ignores one older than what it holds.
	V uint64 `json:"v"`
	// Members maps user ids to their connections on the instance (0: every connection
	// gone, inside the grace period). At most the tracker's MaxMembers are listed.
	Members map[string]int `json:"m,omitempty"`
	// Users counts the instance's distinct users (listed or not), Conns its
	// connections (anonymous ones included), Anonymous the anonymous connections.
	Users     int `json:"u"`
	Conns     int `json:"c"`
	Anonymous int `json:"a,omitempty"`
}

// Empty reports whether s holds no member: the instance left the channel.
func (s *Summary) Empty() bool { return s.Users == 0 && s.Conns == 0 }

// Alive is an instance's liveness record.
type Alive struct {
	Instance string `json:"i"`
	Inc      string `json:"inc"`
}

// Store is where the trackers of a cluster meet. Implementations are safe for
// concurrent use; callbacks run on the store's goroutines and must not block.
type Store interface {
	// Put writes summaries of one instance (an Empty one removes the instance from
	// its channel), as one batch.
	Put(ctx context.Context, sums []*Summary) error
	// Heartbeat marks a's instance alive; the record lapses after the store's TTL.
	Heartbeat(ctx context.Context, a Alive) error
	// FollowAlive calls fn with every liveness record already stored, returns, and
	// then calls it with every heartbeat until stop.
	FollowAlive(fn func(Alive)) (stop func(), err error)
	// Load returns the stored summaries of channel (of every instance, live or not;
	// removed ones may come back as Empty summaries).
	Load(ctx context.Context, channel string) ([]*Summary, error)
	// Follow calls fn with every summary of channel written from now on, until stop.
	// After a lost connection the store delivers the channel's stored summaries again
	// (followers drop what they already hold by V).
	Follow(channel string, fn func(*Summary)) (stop func(), err error)
	// Purge deletes every summary of instance (a dead one).
	Purge(ctx context.Context, instance string) error
	// Close releases the store (not a connection it was given).
	Close() error
}
