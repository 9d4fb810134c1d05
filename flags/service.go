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
	"encore.app/realtime/natsshared"
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
	// NATSURL is the NATS shared with the realtime service (empty: embedded).
	NATSURL string
}

// sharedJetStream returns a JetStream context on the process-wide NATS that also
// carries the realtime bus (encore.app/realtime/natsshared, a plain package). It passes
// the same NATSURL secret as the realtime service, so whichever service starts first
// starts the one shared server (embedded when NATSURL is empty); a process running only
// this service meets the others on the external NATS named by NATSURL.
var sharedJetStream = func(ctx context.Context) (jetstream.JetStream, error) {
	return natsshared.JetStream(ctx, natsshared.Options{URL: secrets.NATSURL})
}

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
