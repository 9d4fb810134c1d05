package monitoring

import (
	"encore.dev/metrics"

	"encore.app/monitoring/health"
	"encore.app/monitoring/savings"
)

// Fleet figures, set at every aggregator sample.
var (
	fleetInstances          = metrics.NewGauge[float64]("realtime_fleet_instances", metrics.GaugeConfig{})
	fleetConnections        = metrics.NewGauge[float64]("realtime_fleet_connections", metrics.GaugeConfig{})
	fleetEventsPerSecond    = metrics.NewGauge[float64]("realtime_fleet_events_delivered_per_second", metrics.GaugeConfig{})
	fleetDropsPerSecond     = metrics.NewGauge[float64]("realtime_fleet_drops_per_second", metrics.GaugeConfig{})
	fleetWireBytesPerSecond = metrics.NewGauge[float64]("realtime_fleet_wire_bytes_per_second", metrics.GaugeConfig{})
	fleetDeliveryP50Ms      = metrics.NewGauge[float64]("realtime_fleet_delivery_p50_ms", metrics.GaugeConfig{})
	fleetDeliveryP99Ms      = metrics.NewGauge[float64]("realtime_fleet_delivery_p99_ms", metrics.GaugeConfig{})
	fleetWriteP99Ms         = metrics.NewGauge[float64]("realtime_fleet_write_p99_ms", metrics.GaugeConfig{})
	fleetSavingsPerDay      = metrics.NewGauge[float64]("realtime_fleet_savings_per_day", metrics.GaugeConfig{})
	fleetSamples            = metrics.NewCounter[uint64]("realtime_fleet_samples", metrics.CounterConfig{})
)

// record sets the gauges from one sample. It runs on the aggregator's goroutine.
func record(ov health.Overview, series health.Series) {
	fleetSamples.Increment()
	fleetInstances.Set(float64(ov.Instances))
	fleetConnections.Set(float64(ov.Totals.ActiveConnections))
	fleetEventsPerSecond.Set(ov.Rates.EventsDelivered)
	fleetDropsPerSecond.Set(ov.Rates.Dropped)
	fleetWireBytesPerSecond.Set(ov.Rates.BytesWire)
	fleetDeliveryP50Ms.Set(ov.DeliveryP50.P50)
	fleetDeliveryP99Ms.Set(ov.DeliveryP99.P50)
	fleetWriteP99Ms.Set(ov.WriteLatency.P99)
	if rep, err := savings.Estimate(savings.FromSeries(series), savings.DefaultPrices()); err == nil {
		fleetSavingsPerDay.Set(rep.PerDay.Savings)
	}
}
