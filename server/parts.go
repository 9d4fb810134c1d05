package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"encore.app/dashboard/views"
	"encore.app/dashboard/web"
	"encore.app/flags/flag"
	"encore.app/monitoring/health"
	"encore.app/monitoring/httpapi"
	"encore.app/monitoring/savings"
	"encore.app/realtime/origin"
	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
	"encore.app/realtime/streamflag"
)

// flagsPart is the flag store, its HTTP API and the streaming switch that follows
// realtime-streaming-v2. close stops the follower, then the store.
type flagsPart struct {
	adminKey  string // the key the admin API accepts ("" when none: the console's admin panels stay closed)
	store     flag.Store
	api       *flag.API
	handler   http.Handler
	read      http.Handler         // GET /v2/flags: origin policy and CORS
	admin     http.Handler         // the admin routes: origin policy
	preflight http.Handler         // OPTIONS /v2/flags
	follower  *streamflag.Follower // nil until follow
}

// openFlags opens the flag store and its HTTP API; user resolves the caller of
// GET /v2/flags. follow starts the streaming switch once the engine runs.
func openFlags(ctx context.Context, o *Options, be backend, user flag.UserResolver, origins *origin.Policy, log *slog.Logger) (*flagsPart, error) {
	store, err := be.Flags(ctx, log)
	if err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	p := &flagsPart{store: store}
	key := o.AdminKey
	if key == "" && !o.Env.Hosted {
		key = DevAdminKey
		log.Warn("DEV MODE: no flags admin key (" + o.name("AdminKey") + "): the flags admin API accepts the key \"" + DevAdminKey + "\"")
	}
	p.adminKey = key
	if key == "" {
		// Hosted without a key: a random key nobody knows, so every admin request is refused.
		log.Warn("no flags admin key (" + o.name("AdminKey") + "): the flags admin API refuses every request")
		key = rand.Text()
	}
	if p.api, err = flag.NewAPI(store, []flag.AdminKey{{Name: "admin", Key: key}}, log); err != nil {
		store.Close()
		return nil, fmt.Errorf("%s: %w", o.name("AdminKey"), err)
	}
	p.handler = flag.NewHandler(p.api, user)
	h := p.handler
	// GET /v2/flags is read by browser clients, maybe from another origin: the origin
	// policy of the stream, with CORS. The admin API is checked (a foreign page is
	// refused) but gets no CORS: browsers never read it cross-origin.
	p.read = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origins.Allow(w, r, true) {
			h.ServeHTTP(w, r)
		}
	})
	p.admin = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origins.Allow(w, r, false) {
			h.ServeHTTP(w, r)
		}
	})
	p.preflight = http.HandlerFunc(origins.Preflight)
	return p, nil
}

// follow makes eng follow realtime-streaming-v2 (OFF for a user: stream connections
// move to long-poll; ON: polls move back).
func (p *flagsPart) follow(eng *stream.Engine, log *slog.Logger) error {
	f, err := streamflag.Follow(eng, p.store, log)
	if err != nil {
		return fmt.Errorf("flags: %w", err)
	}
	p.follower = f
	return nil
}

// userFlags is every flag evaluated for a user (stream.Config.WelcomeFlags).
func (p *flagsPart) userFlags(userID string) map[string]bool {
	return p.store.Evaluator().EvaluateAll(userID)
}

// streamingFlag is the dashboard's view of realtime-streaming-v2.
func (p *flagsPart) streamingFlag() views.Flag {
	f, ok := p.store.Evaluator().Flag(flag.StreamingV2)
	return views.Flag{Name: flag.StreamingV2, Known: ok, Enabled: f.Enabled, Detail: fmt.Sprintf("rollout %d%%", f.Rollout)}
}

func (p *flagsPart) close() {
	if p == nil {
		return
	}
	if p.follower != nil {
		p.follower.Close()
	}
	_ = p.store.Close()
}

// monitorPart is browser health, this instance's fleet record, the fleet aggregate,
// the overview API and the dashboard.
type monitorPart struct {
	clients *health.ClientHealth // fed by the engine's OnHealth
	fleet   *health.Fleet
	api     *httpapi.Handler
	dash    *web.Handler

	agg      atomic.Pointer[health.Aggregator]                    // set once the fleet runs
	onSample atomic.Pointer[func(health.Overview, health.Series)] // Server.OnFleetSample
}

func newMonitor() *monitorPart {
	return &monitorPart{clients: health.NewClientHealth(time.Minute, 6, nil)}
}

// onHealth feeds browsers' health frames into the fleet figures (stream.Config.OnHealth).
func (m *monitorPart) onHealth(_ *stream.Client, h *protocol.HealthReport) { m.clients.Observe(h) }

// start publishes this instance's snapshot, aggregates the fleet and builds the
// overview API and the dashboard (showing flag).
func (m *monitorPart) start(ctx context.Context, be backend, snapshot func() health.InstanceSnapshot,
	flag func() views.Flag, dash web.Options, log *slog.Logger) error {
	fleet, err := be.Fleet(ctx, health.FleetConfig{Snapshot: snapshot, Aggregate: true,
		Aggregator: health.AggregatorOptions{OnSample: m.sampled}})
	if err != nil {
		return fmt.Errorf("monitoring: %w", err)
	}
	m.fleet = fleet
	m.agg.Store(fleet.Aggregator)
	src, err := web.NewAggregatorSource(fleet.Aggregator, savings.DefaultPrices(), "realtime-streaming-v2", flag)
	if err != nil {
		fleet.Close()
		return err
	}
	if m.api, err = httpapi.New(fleet.Aggregator, savings.DefaultPrices(), log); err != nil {
		fleet.Close()
		return err
	}
	dash.Logger = log
	m.dash = web.New(src, dash)
	return nil
}

// sampled runs on the aggregator's goroutine after every sample.
func (m *monitorPart) sampled(ov health.Overview) {
	f, agg := m.onSample.Load(), m.agg.Load()
	if f != nil && agg != nil {
		(*f)(ov, agg.Series())
	}
}

func (m *monitorPart) close() {
	if m.dash != nil {
		m.dash.Close()
	}
	if m.fleet != nil {
		_ = m.fleet.Close()
	}
}
