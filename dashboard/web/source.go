package web

import (
	"context"

	"encore.app/dashboard/views"
	"encore.app/monitoring/health"
	"encore.app/monitoring/savings"
)

// AggregatorSource is the Source of a process that runs the Aggregator itself (the
// standalone server): figures from the Aggregator, savings estimated over its whole time
// series, and the flag from a function.
type AggregatorSource struct {
	agg    *health.Aggregator
	prices savings.Prices
	flag   func() views.Flag
}

var _ Source = (*AggregatorSource)(nil)

// NewAggregatorSource checks prices. flag may be nil: the page then shows flagName with
// the state "unknown".
func NewAggregatorSource(agg *health.Aggregator, prices savings.Prices, flagName string, flag func() views.Flag) (*AggregatorSource, error) {
	if err := prices.Validate(); err != nil {
		return nil, err
	}
	if flag == nil {
		flag = func() views.Flag { return views.Flag{Name: flagName} }
	}
	return &AggregatorSource{agg: agg, prices: prices, flag: flag}, nil
}

// Snapshot reads the aggregator; it never fails.
func (s *AggregatorSource) Snapshot(context.Context) (Snapshot, error) {
	series := s.agg.Series()
	rep, _ := savings.Estimate(savings.FromSeries(series), s.prices) // prices validated at construction
	return Snapshot{Overview: s.agg.Overview(), Series: series, Savings: rep, Flag: s.flag()}, nil
}
