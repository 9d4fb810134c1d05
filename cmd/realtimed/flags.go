package main

import (
	"context"
	"fmt"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

	"encore.app/dashboard/views"
	"encore.app/flags/flag"
	"encore.app/realtime/streamflag"
)

// devAdminKey is the flags admin key in dev mode (no -admin-key): logged loudly.
const devAdminKey = "dev-admin-key-change-me"

// flagsPart is the flag store on the bus's NATS, its HTTP API, and the streaming
// switch that follows realtime-streaming-v2. The server owns it: closeFlags stops the
// follower goroutine and the store's watcher.
type flagsPart struct {
	store  *flag.KVStore
	follow *streamflag.Follower
}

// startFlags opens the flag store (KV bucket "flags" on the bus's NATS), mounts
// /v2/flags and /v2/flags/admin/... on mux, and makes the engine follow the streaming
// flag (OFF for a user: stream connections move to long-poll; ON: polls move back).
func (s *server) startFlags(ctx context.Context, mux *http.ServeMux) error {
	js, err := jetstream.New(s.bus.Conn())
	if err != nil {
		return fmt.Errorf("flags: jetstream: %w", err)
	}
	store, err := flag.Open(ctx, js, flag.Options{Logger: s.log})
	if err != nil {
		return fmt.Errorf("flags: %w", err)
	}
	key := s.o.adminKey
	if key == "" {
		key = devAdminKey
		s.log.Warn("DEV MODE: no -admin-key set; the flags admin API accepts the key \"" + devAdminKey + "\". Set REALTIME_ADMIN_KEY in production.")
	}
	api, err := flag.NewAPI(store, []flag.AdminKey{{Name: "admin", Key: key}}, s.log)
	if err != nil {
		store.Close()
		return fmt.Errorf("flags: %w", err)
	}
	flag.NewHandler(api, func(r *http.Request) (string, error) {
		id, err := s.eng.Identify(r)
		if err != nil {
			return "", err
		}
		return id.UserID, nil
	}).Register(mux)
	follow, err := streamflag.Follow(s.eng, store, s.log)
	if err != nil {
		store.Close()
		return fmt.Errorf("flags: %w", err)
	}
	s.flags = &flagsPart{store: store, follow: follow}
	if s.mon != nil {
		s.mon.flag = func() views.Flag {
			f, ok := store.Evaluator().Flag(flag.StreamingV2)
			return views.Flag{Name: flag.StreamingV2, Known: ok, Enabled: f.Enabled, Detail: fmt.Sprintf("rollout %d%%", f.Rollout)}
		}
	}
	return nil
}

// closeFlags stops following the flag and closes the store. Idempotent.
func (s *server) closeFlags() {
	if s.flags == nil {
		return
	}
	s.flags.follow.Close()
	_ = s.flags.store.Close()
	s.flags = nil
}
