// Package web serves the dashboard: GET <mount> renders the page (a complete static
// snapshot, readable without JavaScript) and GET <mount>/events streams re-rendered
// live fragments as server-sent events every Interval.
//
// Mount the Handler at /dashboard and /dashboard/ in a plain server; the Encore shell
// calls Page and Events from its raw endpoints.
package web

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"encore.app/dashboard/views"
	"encore.app/monitoring/health"
	"encore.app/monitoring/savings"
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
	Presence views.Presence
}

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
}

// Handler serves the page and the event stream. Safe for concurrent use.
type Handler struct {
	src  Source  // immutable after construction
	opts Options // immutable after construction

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
	return &Handler{src: src, opts: opts, done: make(chan struct{})}
}

// ServeHTTP routes .../events to Events and everything else to Page.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(strings.TrimSuffix(r.URL.Path, "/"), "/events") {
		h.Events(w, r)
		return
	}
	h.Page(w, r)
}

// Close ends every open event stream (at its next update) and refuses new ones. It
// does not wait: the streams run on their requests' goroutines, which the HTTP server
// owns and waits for.
func (h *Handler) Close() { h.closeOnce.Do(func() { close(h.done) }) }

// Streams is the number of open event streams; Refused counts streams refused past MaxStreams.
func (h *Handler) Streams() int64  { return h.streams.Load() }
func (h *Handler) Refused() uint64 { return h.refused.Load() }

func (h *Handler) model(ctx context.Context, eventsURL string) (views.Model, error) {
	s, err := h.src.Snapshot(ctx)
	if err != nil {
		return views.Model{}, err
	}
	return views.Model{
		Now: h.opts.Now(), Overview: s.Overview, Series: s.Series, Savings: s.Savings, Flag: s.Flag, Presence: s.Presence,
		EventsURL: eventsURL, IntervalSeconds: int(h.opts.Interval.Round(time.Second) / time.Second),
	}, nil
}

// Page renders the whole dashboard.
func (h *Handler) Page(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	eventsURL := strings.TrimSuffix(r.URL.Path, "/") + "/events"
	m, err := h.model(r.Context(), eventsURL)
	if err != nil {
		h.opts.Logger.Error("dashboard: source", "err", err)
		http.Error(w, "dashboard figures unavailable", http.StatusServiceUnavailable)
		return
	}
	var buf bytes.Buffer
	if err := views.Page(m).Render(r.Context(), &buf); err != nil {
		h.opts.Logger.Error("dashboard: render page", "err", err)
		http.Error(w, "dashboard unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
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
		err := h.writeUpdate(ctx, &buf, id)
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
func (h *Handler) writeUpdate(ctx context.Context, buf *bytes.Buffer, id int) error {
	m, err := h.model(ctx, "")
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
