package server

import (
	"log/slog"
	"net/http"
	"time"
)

// How long a route's requests may last (Route.Lasting).
const (
	lastWebSocket = "websocket"
	lastPoll      = "poll"
	lastStream    = "stream"
)

// maxPollWait is the longest wait a poll may ask for (the engine's MaxPollTimeout).
const maxPollWait = 60 * time.Second

// HTTPServer is the standalone server's net/http server for h with the timeouts of o:
// ReadHeaderTimeout and IdleTimeout for every connection (an idle keep-alive
// connection is closed after IdleTimeout), and ReadTimeout and WriteTimeout per
// request, by route (Route.Lasting): WebSocket upgrades get none (the engine bounds
// every frame write and closes silent connections), long-polls get the longest poll
// wait on top, the dashboard's event stream and the profiles none. The Encore shell
// does not use it: Encore's server and gateway own the connections there.
func HTTPServer(o Options, h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.Default()
	}
	return &http.Server{
		Handler:           withDeadlines(o, h),
		ReadHeaderTimeout: o.ReadHeaderTimeout,
		IdleTimeout:       o.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// withDeadlines sets each request's read and write deadlines (http.ResponseController)
// after its route. They are set on every request, since a keep-alive connection keeps
// the deadlines of the request before.
func withDeadlines(o Options, h http.Handler) http.Handler {
	lasting := map[string]string{}
	for _, r := range Routes() {
		if r.Lasting != "" {
			lasting[r.Path] = r.Lasting
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var read, write time.Time // zero: none
		now := time.Now()
		switch lasting[r.URL.Path] {
		case lastWebSocket, lastStream:
		case lastPoll:
			read, write = now.Add(o.ReadTimeout+maxPollWait), now.Add(o.WriteTimeout+maxPollWait)
		default:
			read, write = now.Add(o.ReadTimeout), now.Add(o.WriteTimeout)
		}
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(read)
		_ = rc.SetWriteDeadline(write)
		h.ServeHTTP(w, r)
	})
}
