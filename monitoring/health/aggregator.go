package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Reasons the aggregator refuses a bucket entry (Aggregator.Rejected).
const (
	RejectDecode       = "decode"             // the value is not a valid snapshot
	RejectKeyMismatch  = "key_mismatch"       // the value's instance does not match its key
	RejectTooMany      = "too_many_instances" // MaxInstances reached
	RejectOutOfOrder   = "out_of_order"       // older than the snapshot already held
	RejectWatchRestart = "watch_restart"      // the watcher ended and was restarted
)

// AggregatorOptions configure an Aggregator. Zero values take the defaults.
type AggregatorOptions struct {
	// TTL after which an instance not heard from is dropped (default 15s). Use the
	// bucket's TTL.
	TTL time.Duration
	// Step between time-series samples (default 5s).
	Step time.Duration
	// Points kept in the time series (default 720: one hour at 5s).
	Points int
	// MaxInstances bounds the instances held (default 1024).
	MaxInstances int
	// StaleAfter: an instance not heard from for this long is flagged Stale in its
	// row (default two thirds of TTL: two missed reports at the default TTL/3 interval).
	StaleAfter time.Duration
	// DepartedFor is how long an instance that left stays in Overview.Departed
	// (default 10m; at most maxDeparted are kept).
	DepartedFor time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnSample, when set, is called with each sampled Overview, outside the aggregator's
	// lock, on the goroutine that called Sample (Run's). It must not block.
	OnSample func(Overview)
}

func (o *AggregatorOptions) defaults() {
	if o.TTL <= 0 {
		o.TTL = 15 * time.Second
	}
	if o.Step <= 0 {
		o.Step = 5 * time.Second
	}
	if o.Points <= 0 {
		o.Points = 720
	}
	if o.MaxInstances <= 0 {
		o.MaxInstances = 1024
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = o.TTL * 2 / 3
	}
	if o.DepartedFor <= 0 {
		o.DepartedFor = 10 * time.Minute
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Aggregator merges the latest snapshots of the live instances and keeps the fleet's
// time series. All methods are safe for concurrent use; none blocks on I/O except Run.
type Aggregator struct {
	opts AggregatorOptions // immutable after construction

	mu        sync.Mutex // guards the fields below
	instances map[string]*instance
	ring      *Ring
	rejected  map[string]uint64 // keys: Reject* constants
	departed  []Departure       // oldest first, at most maxDeparted
}

// maxDeparted bounds Overview.Departed.
const maxDeparted = 16

// Why an instance left the fleet (Departure.Reason).
const (
	DepartShutdown = "shutdown" // it deleted its entry: a clean stop
	DepartExpired  = "expired"  // its entry expired, or it was not heard from for the TTL
)

type instance struct {
	cur, prev      InstanceSnapshot
	hasPrev        bool
	seen, prevSeen time.Time
}

// NewAggregator returns an empty Aggregator.
func NewAggregator(opts AggregatorOptions) *Aggregator {
	opts.defaults()
	return &Aggregator{
		opts:      opts,
		instances: map[string]*instance{},
		ring:      NewRing(opts.Points),
		rejected:  map[string]uint64{},
	}
}

// Options returns the effective options.
func (a *Aggregator) Options() AggregatorOptions { return a.opts }

// Put records a snapshot as the instance's latest. It refuses a snapshot older than the
// one held and a new instance past MaxInstances, counting the reason.
func (a *Aggregator) Put(s InstanceSnapshot) error {
	if err := ValidateSnapshot(&s); err != nil {
		a.reject(RejectDecode)
		return err
	}
	now := a.opts.Now()
	key := Key(s.Instance)
	a.mu.Lock()
	defer a.mu.Unlock()
	in, ok := a.instances[key]
	if !ok {
		if len(a.instances) >= a.opts.MaxInstances {
			a.rejected[RejectTooMany]++
			return fmt.Errorf("health: %d instances held, limit %d: %s refused", len(a.instances), a.opts.MaxInstances, s.Instance)
		}
		a.instances[key] = &instance{cur: s, seen: now}
		a.forgetDepartedLocked(s.Instance)
		return nil
	}
	if s.Time < in.cur.Time {
		a.rejected[RejectOutOfOrder]++
		return fmt.Errorf("health: snapshot of %s at %d older than held %d", s.Instance, s.Time, in.cur.Time)
	}
	in.prev, in.prevSeen, in.hasPrev = in.cur, in.seen, true
	in.cur, in.seen = s, now
	return nil
}

// PutEncoded decodes a bucket value stored under key and records it.
func (a *Aggregator) PutEncoded(key string, value []byte) error {
	s, err := DecodeSnapshot(value)
	if err != nil {
		a.reject(RejectDecode)
		return fmt.Errorf("key %q: %w", key, err)
	}
	if Key(s.Instance) != key {
		a.reject(RejectKeyMismatch)
		return fmt.Errorf("%w: key %q holds instance %q", ErrBadSnapshot, key, s.Instance)
	}
	return a.Put(s)
}

// Remove forgets an instance by bucket key (its entry was deleted or expired); it is
// listed in Overview.Departed with reason DepartShutdown.
func (a *Aggregator) Remove(key string) { a.RemoveFor(key, DepartShutdown) }

// RemoveFor forgets an instance by bucket key and lists it in Overview.Departed with
// reason (DepartShutdown or DepartExpired).
func (a *Aggregator) RemoveFor(key, reason string) {
	now := a.opts.Now()
	a.mu.Lock()
	a.departLocked(key, reason, now)
	a.mu.Unlock()
}

func (a *Aggregator) departLocked(key, reason string, now time.Time) {
	in, ok := a.instances[key]
	if !ok {
		return
	}
	delete(a.instances, key)
	a.forgetDepartedLocked(in.cur.Instance)
	a.departed = append(a.departed, Departure{Instance: in.cur.Instance, At: now.UnixMilli(),
		LastSeen: in.seen.UnixMilli(), Reason: reason})
	if len(a.departed) > maxDeparted {
		a.departed = slices.Delete(a.departed, 0, len(a.departed)-maxDeparted)
	}
}

func (a *Aggregator) forgetDepartedLocked(instance string) {
	a.departed = slices.DeleteFunc(a.departed, func(d Departure) bool { return d.Instance == instance })
}

func (a *Aggregator) reject(reason string) {
	a.mu.Lock()
	a.rejected[reason]++
	a.mu.Unlock()
}

// Rejected returns the count of refused entries per reason.
func (a *Aggregator) Rejected() map[string]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return copyCounts(a.rejected)
}

// expireLocked drops instances not heard from for TTL.
func (a *Aggregator) expireLocked(now time.Time) {
	for k, in := range a.instances {
		if now.Sub(in.seen) >= a.opts.TTL {
			a.departLocked(k, DepartExpired, now)
		}
	}
	cut := now.Add(-a.opts.DepartedFor).UnixMilli()
	a.departed = slices.DeleteFunc(a.departed, func(d Departure) bool { return d.At < cut })
}

// Overview merges the live instances now.
func (a *Aggregator) Overview() Overview {
	now := a.opts.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked(now)
	return a.overviewLocked(now)
}

// Sample takes one time-series point now (expiring dead instances first) and returns
// the Overview it was taken from.
func (a *Aggregator) Sample() Overview {
	now := a.opts.Now()
	a.mu.Lock()
	a.expireLocked(now)
	ov := a.overviewLocked(now)
	a.ring.Add(pointOf(ov))
	a.mu.Unlock()
	if a.opts.OnSample != nil {
		a.opts.OnSample(ov)
	}
	return ov
}

// Series returns the time series, oldest point first.
func (a *Aggregator) Series() Series {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Series{StepMs: a.opts.Step.Milliseconds(), Points: a.ring.Points()}
}

// PointOf is the time-series point of an Overview (what Sample appends): the dashboard
// draws the current Overview as its charts' last point, so cards and charts agree.
func PointOf(ov Overview) Point { return pointOf(ov) }

func pointOf(ov Overview) Point {
	return Point{
		T:                     ov.Time,
		Instances:             ov.Instances,
		Connections:           ov.Totals.ActiveConnections,
		EventsPublishedPerSec: ov.Rates.EventsPublished,
		EventsDeliveredPerSec: ov.Rates.EventsDelivered,
		FramesPerSec:          ov.Rates.FramesWritten,
		BytesRawPerSec:        ov.Rates.BytesRaw,
		BytesWirePerSec:       ov.Rates.BytesWire,
		DropsPerSec:           ov.Rates.Dropped,
		DisconnectsPerSec:     ov.Rates.Disconnects,
		SlowPerSec:            ov.Rates.SlowDisconnects,
		LongPollPerSec:        ov.Rates.LongPollRequests,
		WriteP50Ms:            ov.WriteLatency.P50,
		WriteP99Ms:            ov.WriteLatency.P99,
		DeliveryP50Ms:         ov.DeliveryP50.P50,
		DeliveryP99Ms:         ov.DeliveryP99.P50,
		RTTP50Ms:              ov.ClientRTT.P50,
	}
}

// counterRate is the per-second increase of a cumulative counter; a decrease means the
// instance restarted, so the whole current value is the increase.
func counterRate(cur, prev uint64, dt float64) float64 {
	if dt <= 0 {
		return 0
	}
	if cur < prev {
		return float64(cur) / dt
	}
	return float64(cur-prev) / dt
}

// gauge reads an engine gauge (signed) as a count; a negative value (never sent by a
// healthy engine, possible in a bucket value) counts as 0.
func gauge(v int64) uint64 { return uint64(max(v, 0)) }

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

func addCounts(dst, src map[string]uint64) {
	for k, v := range src {
		dst[k] += v
	}
}

func (a *Aggregator) overviewLocked(now time.Time) Overview {
	ov := Overview{
		Time:        now.UnixMilli(),
		Instances:   len(a.instances),
		Drops:       map[string]uint64{},
		Disconnects: map[string]uint64{},
		Recoveries:  map[string]uint64{},
		Refusals:    map[string]uint64{},
		Breakers:    map[string]uint64{},
		Transports:  map[string]uint64{},
		Departed:    slices.Clone(a.departed),
	}
	write, rtt, p50, p99 := NewHistogram(), NewHistogram(), NewHistogram(), NewHistogram()
	exact := true
	var weighted50, weighted90 float64
	var approx Percentiles
	t := &ov.Totals
	for _, in := range a.instances {
		s := &in.cur
		conns, subs := gauge(s.ActiveConnections), gauge(s.Subscriptions)
		t.ActiveConnections += conns
		t.ConnectionsTotal += s.ConnectionsTotal
		t.Subscriptions += subs
		t.EventsPublished += s.EventsPublished
		t.EventsDispatched += s.EventsDispatched
		t.EventsDelivered += s.EventsDelivered
		t.EventsReplayed += s.EventsReplayed
		t.FramesWritten += s.FramesWritten
		t.BytesRaw += s.BytesRaw
		t.BytesWire += s.BytesWire
		t.SlowDisconnects += s.SlowDisconnects
		t.HealthReports += s.HealthReports
		t.ClientReports += s.Client.Reports
		t.LongPollRequests += s.LongPollRequests
		addCounts(ov.Drops, s.Drops)
		addCounts(ov.Disconnects, s.Disconnects)
		addCounts(ov.Recoveries, s.Recoveries)
		addCounts(ov.Refusals, s.Refusals)
		addCounts(ov.Transports, s.Client.Transports)
		breaker := s.Breaker
		if breaker == "" {
			breaker = "unknown"
		}
		ov.Breakers[breaker]++

		row := InstanceRow{
			Instance: s.Instance, AgeSeconds: now.Sub(in.seen).Seconds(), UptimeSeconds: s.UptimeSeconds,
			ActiveConnections: conns, Subscriptions: subs, Dropped: sum(s.Drops),
			Breaker: breaker, WriteP99Ms: s.WriteLatencyMs.P99, BytesRaw: s.BytesRaw, BytesWire: s.BytesWire,
			LongPollRequests: s.LongPollRequests, Stale: now.Sub(in.seen) >= a.opts.StaleAfter,
		}
		if in.hasPrev {
			p := &in.prev
			dt := float64(s.Time-p.Time) / 1000
			if s.Time <= p.Time {
				dt = in.seen.Sub(in.prevSeen).Seconds()
			}
			r := &ov.Rates
			r.EventsPublished += counterRate(s.EventsPublished, p.EventsPublished, dt)
			row.EventsPerSec = counterRate(s.EventsDelivered, p.EventsDelivered, dt)
			r.EventsDelivered += row.EventsPerSec
			row.FramesPerSec = counterRate(s.FramesWritten, p.FramesWritten, dt)
			r.FramesWritten += row.FramesPerSec
			r.BytesRaw += counterRate(s.BytesRaw, p.BytesRaw, dt)
			r.BytesWire += counterRate(s.BytesWire, p.BytesWire, dt)
			r.Dropped += counterRate(sum(s.Drops), sum(p.Drops), dt)
			r.Disconnects += counterRate(sum(s.Disconnects), sum(p.Disconnects), dt)
			r.SlowDisconnects += counterRate(s.SlowDisconnects, p.SlowDisconnects, dt)
			r.ConnectionsOpen += counterRate(s.ConnectionsTotal, p.ConnectionsTotal, dt)
			r.LongPollRequests += counterRate(s.LongPollRequests, p.LongPollRequests, dt)
		}
		ov.InstanceRows = append(ov.InstanceRows, row)

		if s.WriteLatency != nil {
			_ = write.Merge(s.WriteLatency) // same mapping: cannot fail
		} else if s.WriteLatencyMs.Count > 0 {
			exact = false
		}
		w := s.WriteLatencyMs
		approx.Count += w.Count
		weighted50 += w.P50 * float64(w.Count)
		weighted90 += w.P90 * float64(w.Count)
		approx.P99 = max(approx.P99, w.P99)
		approx.Max = max(approx.Max, w.Max)
		_ = rtt.Merge(s.Client.RTT)
		_ = p50.Merge(s.Client.LatencyP50)
		_ = p99.Merge(s.Client.LatencyP99)
	}
	t.Dropped = sum(ov.Drops)
	t.Refused = sum(ov.Refusals)
	if t.FramesWritten > 0 {
		t.EventsPerFrame = float64(t.EventsDelivered) / float64(t.FramesWritten)
	}
	if exact {
		ov.WriteLatency, ov.WriteLatencyExact = write.Summary(), true
	} else {
		if approx.Count > 0 {
			approx.P50 = weighted50 / float64(approx.Count)
			approx.P90 = weighted90 / float64(approx.Count)
		}
		ov.WriteLatency = approx
	}
	ov.ClientRTT, ov.DeliveryP50, ov.DeliveryP99 = rtt.Summary(), p50.Summary(), p99.Summary()
	slices.SortFunc(ov.InstanceRows, func(x, y InstanceRow) int { return cmp.Compare(x.Instance, y.Instance) })
	return ov
}

// Run watches the records and samples the series every Step until ctx is done. It
// restarts the watch (counting RejectWatchRestart) if it ends early. It returns
// ctx.Err() when stopped, or the error of the first watch if that fails.
func (a *Aggregator) Run(ctx context.Context, recs Records) error {
	w, err := recs.Watch(ctx)
	if err != nil {
		return err
	}
	tick := time.NewTicker(a.opts.Step)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			a.Sample()
		case r, ok := <-w:
			if !ok {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				a.reject(RejectWatchRestart) // the watch ended by itself: its goroutine is gone
				if w, err = a.rewatch(ctx, recs); err != nil {
					return err
				}
				continue
			}
			a.apply(r)
		}
	}
}

// rewatch retries Watch once a second until it succeeds or ctx is done.
func (a *Aggregator) rewatch(ctx context.Context, recs Records) (<-chan Record, error) {
	for {
		w, err := recs.Watch(ctx)
		if err == nil {
			return w, nil
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, errors.Join(ctx.Err(), err)
		case <-t.C:
		}
	}
}

func (a *Aggregator) apply(r Record) {
	if r.Deleted {
		reason := DepartShutdown
		if r.Expired {
			reason = DepartExpired
		}
		a.RemoveFor(r.Key, reason)
		return
	}
	_ = a.PutEncoded(r.Key, r.Value) // refusals are counted in Rejected
}
