// Package health collects, publishes and aggregates the fleet's health.
//
// Each realtime instance builds an InstanceSnapshot (its /v2/realtime/metrics figures plus
// breaker state, long-poll requests and latency histograms) and a Publisher puts it into the
// health Records, whose entries expire after a TTL: a NATS key-value bucket (KVRecords) or
// a Postgres table (PostgresRecords). An Aggregator watches the records,
// keeps the latest snapshot of every live instance, merges them into an Overview (counters
// summed, histograms merged, rates derived from counter deltas) and samples the Overview
// into a fixed ring of Points (the time series). An instance that stops publishing
// disappears when its entry expires (the bucket's TTL) or when the aggregator has not heard
// from it for the TTL by its own clock, whichever comes first.
//
// Latency histograms are DDSketches (github.com/DataDog/sketches-go): 1% relative accuracy,
// mergeable across instances, bounded in memory (MaxBins), serialized compactly.
//
// Memory is bounded: the aggregator keeps at most MaxInstances instances and a ring of
// Points entries; windows keep a fixed number of sub-histograms. Time comes from an
// injected clock (a func() time.Time) everywhere.
package health
