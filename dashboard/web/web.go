// Package web serves the operator's console: GET <mount> renders the page (a complete
// static snapshot, readable without JavaScript; ?range=5m|1h picks the charts' range,
// ?user= runs the connection inspector) and GET <mount>/events streams re-rendered
// live fragments as server-sent events every Interval. With the admin key (auth.go)
// the page adds the busiest channels, the connection inspector and a test publish
// (POST <mount>/publish); POST <mount>/login and <mount>/logout open and close the
// session.
//
// Mount the Handler at /dashboard and /dashboard/ in a plain server; the Encore shell
// calls the same methods from its raw endpoints.
package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"encore.app/dashboard/views"
	"encore.app/monitoring/health"
	"encore.app/monitoring/inspect"
	"encore.app/monitoring/savings"
	"encore.app/realtime/protocol"
)

// Source gives the dashboard its figures. Implementations must be safe for concurrent
// use; Snapshot is called once per page and once per live update.
type Source interface {
	Snapshot(ctx context.Context) (Snapshot, error)
}

// Snapshot is what one rendering shows.
type Snapshot struct {
	Overview health.Overview
	Series   health.Series
	Savings  savings.Report
	Flag     views.Flag
}

// Admin is what the admin panels need. Implementations must be safe for concurrent use.
type Admin interface {
	// Channels returns the fleet's n busiest channels.
	Channels(ctx context.Context, n int) (health.ChannelsView, error)
	// Connections asks every instance for the connections matching q.
	Connections(ctx context.Context, q inspect.Query) (inspect.Result, error)
	// Publish appends one test event (with the checks of the publish API) and returns
	// its sequence. A refusal of the event itself wraps ErrInvalidEvent.
	Publish(ctx context.Context, ev *protocol.Event) (uint64, error)
}

// PresenceSource is an optional interface of an Admin: who is present on a channel
// (issue 15 implements it; the panel is views.PresenceSlot).
type PresenceSource interface {
	Presence(ctx context.Context, channel string) (views.Presence, error)
}

// ErrInvalidEvent marks a test event the publish checks refused (its message is shown).
var ErrInvalidEvent = errors.New("invalid event")

// Options configure a Handler. Zero values take the defaults.
type Options struct {
	// Interval between live updates (default 3s).
	Interval time.Duration
	// MaxStreams bounds concurrent event streams (default 100); past it Events answers 503.
	MaxStreams int
	// MaxStreamDuration ends an event stream after this long (default 15m); the browser's
	// EventSource reconnects by itself.
	MaxStreamDuration time.Duration
	// Logger for render errors (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock shown on the page (default time.Now).
	Now func() time.Time
	// AdminKey opens the admin panels (the flags admin key). Empty: they cannot be opened.
	AdminKey string
	// KeyHint is shown under the sign-in form (the dev-mode key in local development).
	KeyHint string
	// Admin serves the admin panels; nil with an AdminKey shows them empty.
	Admin Admin
	// InspectTimeout bounds one connection-inspector lookup (default 2s).
	InspectTimeout time.Duration
	// TopChannels is how many channels the busiest-channels panel lists (default 10).
	TopChannels int
}

// Handler serves the page, the event stream and the admin forms. Safe for concurrent use.
type Handler struct {
	src  Source   // immutable after construction
	opts Options  // immutable after construction
	auth *keyAuth // immutable after construction (its limiter is safe for concurrent use)

	done      chan struct{} // closed by Close: ends every event stream
	closeOnce sync.Once
	streams   atomic.Int64  // open event streams
	refused   atomic.Uint64 // event streams refused past MaxStreams
}

// New returns a Handler over src.
func New(src Source, opts Options) *Handler {
	if opts.Interval <= 0 {
		opts.Interval = 3 * time.Second
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = 100
	}
	if opts.MaxStreamDuration <= 0 {
		opts.MaxStreamDuration = 15 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.InspectTimeout <= 0 {
		opts.InspectTimeout = inspect.DefaultTimeout
	}
	if opts.TopChannels <= 0 {
		opts.TopChannels = 10
	}
	return &Handler{src: src, opts: opts, auth: newKeyAuth(opts.AdminKey, opts.Now), done: make(chan struct{})}
}

// subpaths of the mount point, routed by ServeHTTP.
const (
	pathEvents  = "/events"
	pathLogin   = "/login"
	pathLogout  = "/logout"
	pathPublish = "/publish"
)

// basePath is the mount point of a request to the page or one of its subpaths.
func basePath(r *http.Request) string {
	p := strings.TrimSuffix(r.URL.Path, "/")
	for _, sub := range []string{pathEvents, pathLogin, pathLogout, pathPublish} {
		if b, ok := strings.CutSuffix(p, sub); ok {
			return b
		}
	}
	return p
}

// ServeHTTP routes .../events, .../login, .../logout and .../publish to their
// methods and everything else to Page.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case strings.HasSuffix(p, pathEvents):
		h.Events(w, r)
	case strings.HasSuffix(p, pathLogin):
		h.Login(w, r)
	case strings.HasSuffix(p, pathLogout):
		h.Logout(w, r)
	case strings.HasSuffix(p, pathPublish):
		h.Publish(w, r)
	default:
		h.Page(w, r)
	}
}

// Close ends every open event stream (at its next update) and refuses new ones. It
// does not wait: the streams run on their requests' goroutines, which the HTTP server
// owns and waits for.
func (h *Handler) Close() { h.closeOnce.Do(func() { close(h.done) }) }

// Streams is the number of open event streams; Refused counts streams refused past MaxStreams.
func (h *Handler) Streams() int64  { return h.streams.Load() }
func (h *Handler) Refused() uint64 { return h.refused.Load() }

// model builds one rendering for the caller c: the figures, and the admin panels
// when c is an admin.
func (h *Handler) model(ctx context.Context, r *http.Request, c caller) (views.Model, error) {
	s, err := h.src.Snapshot(ctx)
	if err != nil {
		return views.Model{}, err
	}
	base := basePath(r)
	rg := views.RangeNamed(r.URL.Query().Get("range"))
	m := views.Model{
		Now: h.opts.Now(), Overview: s.Overview, Series: s.Series, Savings: s.Savings, Flag: s.Flag,
		Range: rg, BasePath: base, EventsURL: base + pathEvents + "?range=" + rg.Name,
		IntervalSeconds: int(h.opts.Interval.Round(time.Second) / time.Second),
		Login:           views.Login{Enabled: h.auth.enabled(), Hint: h.opts.KeyHint},
	}
	if c.admin {
		m.Admin = h.adminModel(ctx, c)
	}
	return m, nil
}

// adminModel reads what the admin panels show on every rendering (the channels).
func (h *Handler) adminModel(ctx context.Context, c caller) *views.Admin {
	a := &views.Admin{CSRF: h.auth.csrf(c.session), ViaBearer: c.bearer}
	if h.opts.Admin == nil {
		a.ChannelsError = "No admin source on this server."
		return a
	}
	ch, err := h.opts.Admin.Channels(ctx, h.opts.TopChannels)
	if err != nil {
		h.opts.Logger.Error("dashboard: channels", "err", err)
		a.ChannelsError = "The channels could not be read."
	}
	a.Channels = ch
	if _, ok := h.opts.Admin.(PresenceSource); ok {
		a.Presence.Available = true
	}
	return a
}

// render writes the page of m with status.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, m views.Model) {
	var buf bytes.Buffer
	if err := views.Page(m).Render(r.Context(), &buf); err != nil {
		h.opts.Logger.Error("dashboard: render page", "err", err)
		http.Error(w, "dashboard unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin")
	w.Header().Set("Content-Security-Policy", views.ContentSecurityPolicy)
	w.Header().Set("X-Frame-Options", "DENY")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// Page renders the whole dashboard; for an admin, with the inspector's answer to
// ?user= and the result of a test publish (?pub=<seq>&ch=<channel>).
func (h *Handler) Page(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	c := h.auth.identify(r)
	m, err := h.model(r.Context(), r, c)
	if err != nil {
		h.opts.Logger.Error("dashboard: source", "err", err)
		http.Error(w, "dashboard figures unavailable", http.StatusServiceUnavailable)
		return
	}
	if m.Admin != nil {
		q := r.URL.Query()
		if u := q.Get("user"); u != "" {
			m.Admin.Inspect = h.inspect(r.Context(), u)
		}
		if seq := q.Get("pub"); seq != "" {
			m.Admin.Published = publishedFromQuery(seq, q.Get("ch"))
		}
	}
	h.render(w, r, http.StatusOK, m)
}

// Events streams a "live" event carrying the re-rendered live region at once and then
// every Interval, until the client leaves, MaxStreamDuration passes or Close is called.
func (h *Handler) Events(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	select {
	case <-h.done:
		http.Error(w, "dashboard shutting down", http.StatusServiceUnavailable)
		return
	default:
	}
	if n := h.streams.Add(1); n > int64(h.opts.MaxStreams) {
		h.streams.Add(-1)
		h.refused.Add(1)
		w.Header().Set("Retry-After", "10")
		http.Error(w, "too many dashboard streams", http.StatusServiceUnavailable)
		return
	}
	defer h.streams.Add(-1)

	c := h.auth.identify(r) // admin: the updates carry the busiest channels too
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.MaxStreamDuration)
	defer cancel()
	retry := h.opts.Interval.Milliseconds()
	if _, err := fmt.Fprintf(w, "retry: %d\n\n", retry); err != nil {
		return
	}
	tick := time.NewTicker(h.opts.Interval)
	defer tick.Stop()
	var buf bytes.Buffer
	for id := 1; ; id++ {
		buf.Reset()
		err := h.writeUpdate(ctx, r, c, &buf, id)
		if err != nil && ctx.Err() != nil {
			return
		}
		if err != nil {
			// Keep the stream: the figures may come back at the next tick.
			h.opts.Logger.Error("dashboard: update", "err", err)
			buf.Reset()
			fmt.Fprintf(&buf, "event: unavailable\ndata: figures unavailable\n\n")
		}
		if _, err := w.Write(buf.Bytes()); err != nil {
			return // client gone
		}
		if err := rc.Flush(); err != nil {
			h.opts.Logger.Error("dashboard: event stream cannot flush", "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-h.done:
			return
		case <-tick.C:
		}
	}
}

// writeUpdate appends one SSE event: the live fragment, one data line per line.
func (h *Handler) writeUpdate(ctx context.Context, r *http.Request, c caller, buf *bytes.Buffer, id int) error {
	m, err := h.model(ctx, r, c)
	if err != nil {
		return err
	}
	var frag bytes.Buffer
	if err := views.Live(m).Render(ctx, &frag); err != nil {
		return err
	}
	fmt.Fprintf(buf, "id: %d\nevent: live\n", id)
	for _, line := range strings.Split(frag.String(), "\n") {
		buf.WriteString("data: ")
		buf.WriteString(strings.TrimSuffix(line, "\r"))
		buf.WriteByte('\n')
	}
	buf.WriteByte('\n')
	return nil
}
