package web

import (
	"encore.app/dashboard/views"
	"encore.app/monitoring/health"
	"encore.app/monitoring/savings"
)

// AggregatorSource is the Source the servers use: figures from an Aggregator, savings
// estimated over its whole time series, and the flag from a function.
type AggregatorSource struct {
	agg    *health.Aggregator
	prices savings.Prices
	flag   func() views.Flag
}

var _ Source = (*AggregatorSource)(nil)

// NewAggregatorSource checks prices; flag may be nil (the page shows the flag as unknown).
func NewAggregatorSource(agg *health.Aggregator, prices savings.Prices, flagName string, flag func() views.Flag) (*AggregatorSource, error) {
	if err := prices.Validate(); err != nil {
		return nil, err
	}
	if flag == nil {
		flag = func() views.Flag { return views.Flag{Name: flagName} }
	}
	return &AggregatorSource{agg: agg, prices: prices, flag: flag}, nil
}

func (s *AggregatorSource) Overview() health.Overview { return s.agg.Overview() }
func (s *AggregatorSource) Series() health.Series     { return s.agg.Series() }
func (s *AggregatorSource) Flag() views.Flag          { return s.flag() }

// Savings estimates over the aggregator's time series (prices were validated at construction).
func (s *AggregatorSource) Savings() savings.Report {
	r, _ := savings.Estimate(savings.FromSeries(s.agg.Series()), s.prices)
	return r
}
