// Service flags serves feature flags, among them realtime-streaming-v2 (the switch
// between WebSocket streaming and long-polling), from a NATS key-value bucket that
// every instance watches. All logic lives in encore.app/flags/flag.
package flags

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"encore.dev/rlog"
	"encore.dev/shutdown"
	"github.com/nats-io/nats.go/jetstream"

	"encore.app/flags/flag"
)

//encore:service
type Service struct {
	store flag.Store
	api   *flag.API // nil when no admin key is configured: admin endpoints refuse
}

// svc lets the package-level endpoints reach the service.
var svc *Service

var secrets struct {
	// FlagsAdminKey authorizes the admin endpoints (Authorization: Bearer <key>).
	// Set with: encore secret set --type dev,local FlagsAdminKey
	FlagsAdminKey string
}

// sharedJetStream returns the process-wide JetStream context on the NATS that also
// carries the realtime bus.
//
// TODO(lead): the shell needs from realtime a plain package function, e.g.
// `natsshared.JetStream(ctx context.Context) (jetstream.JetStream, error)` in
// encore.app/realtime/natsshared (no encore.dev import), that blocks until the
// process-wide embedded or external NATS started by realtime's initService is ready
// (bounded by ctx; Encore runs every initService concurrently) and returns a
// JetStream context on it. Assign it here: `var sharedJetStream = natsshared.JetStream`.
// Until then the flags live in process memory only (not fleet-wide, not persistent),
// and initService logs a warning saying so.
var sharedJetStream func(ctx context.Context) (jetstream.JetStream, error)

func initService() (*Service, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := openStore(ctx)
	if err != nil {
		return nil, err
	}
	s := &Service{store: store}
	if secrets.FlagsAdminKey == "" {
		rlog.Warn("flags: FlagsAdminKey secret not set; admin endpoints refuse every request")
	} else {
		s.api, err = flag.NewAPI(store, []flag.AdminKey{{Name: "admin", Key: secrets.FlagsAdminKey}}, slog.Default())
		if err != nil {
			store.Close()
			return nil, err
		}
	}
	svc = s
	return s, nil
}

func openStore(ctx context.Context) (flag.Store, error) {
	if sharedJetStream == nil {
		rlog.Warn("flags: no shared NATS wired yet; flags are kept in this process only")
		return flag.NewMemory(flag.MemoryOptions{Logger: slog.Default()})
	}
	js, err := sharedJetStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("flags: shared NATS: %w", err)
	}
	return flag.Open(ctx, js, flag.Options{Logger: slog.Default()})
}

// Shutdown stops watching the bucket. Not called when `encore run` is stopped.
func (s *Service) Shutdown(p shutdown.Progress) error {
	return s.store.Close()
}
