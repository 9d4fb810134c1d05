package monitoring

import (
	"context"

	"encore.dev/beta/errs"

	"encore.app/monitoring/health"
	"encore.app/monitoring/savings"
	"encore.app/realtime"
)

// OverviewResponse is the merged fleet now and the savings estimate (the same body as
// cmd/realtimed's, monitoring/httpapi.OverviewBody).
type OverviewResponse struct {
	Overview health.Overview `json:"overview"`
	Savings  savings.Report  `json:"savings"`
	// Rejected counts health-bucket entries the aggregator refused, by reason.
	Rejected map[string]uint64 `json:"rejected"`
}

// Overview returns the merged fleet and the savings estimate.
//
//encore:api public method=GET path=/v2/monitoring/overview
func Overview(ctx context.Context) (*OverviewResponse, error) {
	s, err := realtime.Server()
	if err != nil {
		return nil, &errs.Error{Code: errs.Unavailable, Message: "realtime server unavailable"}
	}
	b := s.Overview()
	return &OverviewResponse{Overview: b.Overview, Savings: b.Savings, Rejected: b.Rejected}, nil
}

// SeriesResponse is the fleet's time series, oldest point first.
type SeriesResponse struct {
	Series health.Series `json:"series"`
}

// Series returns the last hour of fleet samples.
//
//encore:api public method=GET path=/v2/monitoring/series
func Series(ctx context.Context) (*SeriesResponse, error) {
	s, err := realtime.Server()
	if err != nil {
		return nil, &errs.Error{Code: errs.Unavailable, Message: "realtime server unavailable"}
	}
	return &SeriesResponse{Series: s.Series().Series}, nil
}
