package bus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
)

// On a clustered stream a new consumer is created through the meta group; the server
// that leads it may take a moment to listen for fetch requests, and a fetch sent in
// that moment is answered "no responders". A storm of replays makes this common (seen
// in test/cluster's storm test). Replay retries such a fetch a few times before
// calling the bus unavailable.
const (
	fetchNoRespRetries = 25
	fetchNoRespWait    = 20 * time.Millisecond
)

// fetchRetry reports whether a fetch that failed with err should be sent again (after
// a short wait), counting attempts in *n.
func fetchRetry(ctx context.Context, err error, n *int) bool {
	if !errors.Is(err, nats.ErrNoResponders) || *n >= fetchNoRespRetries {
		return false
	}
	*n++
	return sleepCtx(ctx, fetchNoRespWait)
}
