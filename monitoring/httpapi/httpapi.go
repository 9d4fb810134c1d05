// Package httpapi serves the monitoring endpoints for the standalone server, with the
// same paths and JSON bodies as the Encore monitoring service:
//
//	GET /v2/monitoring/overview  {"overview":{...},"savings":{...},"rejected":{...}}
//	GET /v2/monitoring/series    {"series":{"stepMs":5000,"points":[...]}}
package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"encore.app/monitoring/health"
	"encore.app/monitoring/savings"
)

// Paths served by Handler.
const (
	OverviewPath = "/v2/monitoring/overview"
	SeriesPath   = "/v2/monitoring/series"
)

// OverviewBody is the JSON body of OverviewPath.
type OverviewBody struct {
	Overview health.Overview   `json:"overview"`
	Savings  savings.Report    `json:"savings"`
	Rejected map[string]uint64 `json:"rejected"`
}

// SeriesBody is the JSON body of SeriesPath.
type SeriesBody struct {
	Series health.Series `json:"series"`
}

// Handler serves OverviewPath and SeriesPath from an Aggregator.
type Handler struct {
	agg    *health.Aggregator
	prices savings.Prices
	log    *slog.Logger
}

// New returns a Handler; it refuses invalid prices. logger nil means slog.Default().
func New(agg *health.Aggregator, prices savings.Prices, logger *slog.Logger) (*Handler, error) {
	if err := prices.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	return &Handler{agg: agg, prices: prices, log: logger}, nil
}

// Register mounts both paths on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("GET "+OverviewPath, h)
	mux.Handle("GET "+SeriesPath, h)
}

// ServeHTTP answers GET (and HEAD) on OverviewPath and SeriesPath; 404 elsewhere.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var body any
	switch r.URL.Path {
	case OverviewPath:
		body = h.Overview()
	case SeriesPath:
		body = SeriesBody{Series: h.agg.Series()}
	default:
		http.NotFound(w, r)
		return
	}
	b, err := json.Marshal(body)
	if err != nil {
		h.log.Error("monitoring: encode", "path", r.URL.Path, "err", err)
		http.Error(w, "monitoring figures unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}

// Overview builds the overview body (prices were validated by New).
func (h *Handler) Overview() OverviewBody {
	rep, _ := savings.Estimate(savings.FromSeries(h.agg.Series()), h.prices)
	return OverviewBody{Overview: h.agg.Overview(), Savings: rep, Rejected: h.agg.Rejected()}
}
