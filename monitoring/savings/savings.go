// Package savings estimates what the measured traffic would have cost with the old
// long-polling transport and what it costs streamed, from measured counters only.
//
// Baseline (long-polling): every connected client would hold PollsPerClient long-polls,
// each re-issued PollRequestsPerMinute times a minute when idle, and each written frame
// would have ended one poll early (one more request). Every request carries
// RequestOverheadBytes of HTTP headers, and the event payload goes out as raw JSON
// (BytesRaw; or BytesWire with BaselineCompressed).
//
// Actual (streaming): connection-minutes at PricePerMillionConnectionMinutes, frames at
// PricePerMillionRequests, wire bytes at EgressPricePerGB.
//
// Both are scaled from the measured window to a day and a month (DaysPerMonth).
// GB means 10^9 bytes.
package savings

import (
	"errors"
	"fmt"
	"math"

	"encore.app/monitoring/health"
)

// Prices are the model's inputs besides the measurements. All money is in one currency
// (the defaults are US dollars).
type Prices struct {
	// PollsPerClient is N, the long-polls each client held in the old design (default 10).
	PollsPerClient float64 `json:"pollsPerClient"`
	// PollRequestsPerMinute is how often one idle long-poll is re-issued (default 2: a
	// 30 s poll timeout).
	PollRequestsPerMinute float64 `json:"pollRequestsPerMinute"`
	// PricePerMillionRequests is charged per HTTP request, and per stream frame (default 1.00).
	PricePerMillionRequests float64 `json:"pricePerMillionRequests"`
	// EgressPricePerGB is charged per 10^9 bytes sent (default 0.09).
	EgressPricePerGB float64 `json:"egressPricePerGB"`
	// RequestOverheadBytes is the HTTP overhead of one poll, request and response headers
	// (default 700).
	RequestOverheadBytes float64 `json:"requestOverheadBytes"`
	// PricePerMillionConnectionMinutes is charged for holding stream connections (default 0.25).
	PricePerMillionConnectionMinutes float64 `json:"pricePerMillionConnectionMinutes"`
	// BaselineCompressed prices the baseline's payload at wire bytes instead of raw bytes
	// (as if the long-poll responses had been compressed as well as the stream).
	BaselineCompressed bool `json:"baselineCompressed"`
	// DaysPerMonth scales a day to a month (default 30).
	DaysPerMonth float64 `json:"daysPerMonth"`
}

// DefaultPrices returns the documented defaults.
func DefaultPrices() Prices {
	return Prices{
		PollsPerClient:                   10,
		PollRequestsPerMinute:            2,
		PricePerMillionRequests:          1.00,
		EgressPricePerGB:                 0.09,
		RequestOverheadBytes:             700,
		PricePerMillionConnectionMinutes: 0.25,
		DaysPerMonth:                     30,
	}
}

// ErrBadPrices is returned for a negative, NaN or infinite input.
var ErrBadPrices = errors.New("savings: bad prices")

// Validate refuses negative, NaN and infinite values.
func (p Prices) Validate() error {
	for name, v := range map[string]float64{
		"pollsPerClient": p.PollsPerClient, "pollRequestsPerMinute": p.PollRequestsPerMinute,
		"pricePerMillionRequests": p.PricePerMillionRequests, "egressPricePerGB": p.EgressPricePerGB,
		"requestOverheadBytes": p.RequestOverheadBytes, "pricePerMillionConnectionMinutes": p.PricePerMillionConnectionMinutes,
		"daysPerMonth": p.DaysPerMonth,
	} {
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return fmt.Errorf("%w: %s = %v", ErrBadPrices, name, v)
		}
	}
	return nil
}

// Usage is what was measured over a window.
type Usage struct {
	WindowSeconds     float64 `json:"windowSeconds"`
	ConnectionSeconds float64 `json:"connectionSeconds"` // integral of open connections over the window
	EventsDelivered   float64 `json:"eventsDelivered"`
	Frames            float64 `json:"frames"`
	BytesRaw          float64 `json:"bytesRaw"`  // events as plain JSON, before batching and compression
	BytesWire         float64 `json:"bytesWire"` // bytes written to sockets
}

// FromSeries integrates a time series: each point stands for one step.
func FromSeries(s health.Series) Usage {
	step := float64(s.StepMs) / 1000
	var u Usage
	for _, p := range s.Points {
		u.WindowSeconds += step
		u.ConnectionSeconds += float64(p.Connections) * step
		u.EventsDelivered += p.EventsDeliveredPerSec * step
		u.Frames += p.FramesPerSec * step
		u.BytesRaw += p.BytesRawPerSec * step
		u.BytesWire += p.BytesWirePerSec * step
	}
	return u
}

// Costs are one period's figures (a day or a month).
type Costs struct {
	AverageClients float64 `json:"averageClients"`

	BaselineRequests    float64 `json:"baselineRequests"`
	BaselineEgressGB    float64 `json:"baselineEgressGB"`
	BaselineRequestCost float64 `json:"baselineRequestCost"`
	BaselineEgressCost  float64 `json:"baselineEgressCost"`
	BaselineCost        float64 `json:"baselineCost"`

	ConnectionMinutes float64 `json:"connectionMinutes"`
	Frames            float64 `json:"frames"`
	WireGB            float64 `json:"wireGB"`
	ConnectionCost    float64 `json:"connectionCost"`
	FrameCost         float64 `json:"frameCost"`
	WireEgressCost    float64 `json:"wireEgressCost"`
	ActualCost        float64 `json:"actualCost"`

	Savings        float64 `json:"savings"`        // BaselineCost - ActualCost
	SavingsPercent float64 `json:"savingsPercent"` // of BaselineCost
}

// Report is the model's answer with its inputs.
type Report struct {
	Prices   Prices `json:"prices"`
	Usage    Usage  `json:"usage"`
	PerDay   Costs  `json:"perDay"`
	PerMonth Costs  `json:"perMonth"`
	// Measured is false when the window is empty (no figures to scale).
	Measured bool `json:"measured"`
}

// Estimate computes the report. An empty window gives a zero report with Measured false.
func Estimate(u Usage, p Prices) (Report, error) {
	if err := p.Validate(); err != nil {
		return Report{}, err
	}
	r := Report{Prices: p, Usage: u}
	if u.WindowSeconds <= 0 {
		return r, nil
	}
	r.Measured = true
	r.PerDay = costs(u, p, 86400/u.WindowSeconds)
	r.PerMonth = costs(u, p, 86400/u.WindowSeconds*p.DaysPerMonth)
	r.PerMonth.AverageClients = r.PerDay.AverageClients
	return r, nil
}

func costs(u Usage, p Prices, scale float64) Costs {
	var c Costs
	c.AverageClients = u.ConnectionSeconds / u.WindowSeconds
	c.ConnectionMinutes = u.ConnectionSeconds / 60 * scale
	c.Frames = u.Frames * scale
	c.WireGB = u.BytesWire * scale / 1e9

	c.BaselineRequests = c.ConnectionMinutes*p.PollsPerClient*p.PollRequestsPerMinute + c.Frames
	payload := u.BytesRaw
	if p.BaselineCompressed {
		payload = u.BytesWire
	}
	c.BaselineEgressGB = (c.BaselineRequests*p.RequestOverheadBytes + payload*scale) / 1e9
	c.BaselineRequestCost = c.BaselineRequests / 1e6 * p.PricePerMillionRequests
	c.BaselineEgressCost = c.BaselineEgressGB * p.EgressPricePerGB
	c.BaselineCost = c.BaselineRequestCost + c.BaselineEgressCost

	c.ConnectionCost = c.ConnectionMinutes / 1e6 * p.PricePerMillionConnectionMinutes
	c.FrameCost = c.Frames / 1e6 * p.PricePerMillionRequests
	c.WireEgressCost = c.WireGB * p.EgressPricePerGB
	c.ActualCost = c.ConnectionCost + c.FrameCost + c.WireEgressCost

	c.Savings = c.BaselineCost - c.ActualCost
	if c.BaselineCost > 0 {
		c.SavingsPercent = c.Savings / c.BaselineCost * 100
	}
	return c
}
