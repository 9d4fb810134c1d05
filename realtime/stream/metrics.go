package stream

import (
	"math"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"encore.app/realtime/access"
	"encore.app/realtime/bus"
	"encore.app/realtime/stats"
)

// DropReason says why an event meant for a connection was not delivered.
type DropReason int

// Drop reasons. Every drop is counted under exactly one.
const (
	DropSlowConsumer DropReason = iota // queue overflowed; the connection is closed and resumes by cursor
	DropClosing                        // the connection was already closing
	DropReplayFailed                   // replay aborted (bus error); the connection is closed and resumes
	DropQueueBudget                    // the instance's queue budget closed the connection (4105); it resumes
	numDropReasons
)

var dropNames = [...]string{"slow_consumer", "closing", "replay_failed", "queue_budget"}

func (r DropReason) String() string { return dropNames[r] }

// DisconnectReason says why a connection ended. Exactly one per connection.
type DisconnectReason int

// Disconnect reasons.
const (
	DiscClientClosed   DisconnectReason = iota // client sent a close frame
	DiscReadError                              // connection broke while reading
	DiscSlowConsumer                           // queue overflow (4100)
	DiscHeartbeat                              // nothing read within the heartbeat timeout (4001)
	DiscWriteError                             // a write failed, or the socket took nothing for WriteTimeout
	DiscShutdown                               // server drain (4101)
	DiscProtocol                               // too many bad frames (4400), or a text frame that is not UTF-8 (1007)
	DiscFrameTooBig                            // client frame over the limit (1009)
	DiscReplayOverload                         // no replay slot (4103)
	DiscReplayFailed                           // bus replay failed mid-way (4103)
	DiscKicked                                 // closed by a policy hook (flags, limits)
	DiscTokenExpired                           // token expired without a refresh (4200)
	DiscRateLimited                            // client sent frames over its rate (4102)
	DiscQueueBudget                            // held the most unsent data when the queue budget was exceeded (4105)
	numDisconnectReasons
)

var discNames = [...]string{"client_closed", "read_error", "slow_consumer", "heartbeat_timeout",
	"write_error", "shutdown", "protocol_error", "frame_too_big", "replay_overloaded", "replay_failed", "kicked",
	"token_expired", "rate_limited", "queue_budget"}

func (r DisconnectReason) String() string { return discNames[r] }

// Refusal reasons for connections refused before or at upgrade. AuthError.Reason may
// name one of the others; unknown names count as RefuseAuth.
const (
	RefuseAuth        = access.RefuseAuth
	RefuseDraining    = access.RefuseDraining
	RefuseUpgrade     = access.RefuseUpgrade
	RefuseRateLimited = access.RefuseRateLimited
	RefuseTooMany     = access.RefuseTooMany
	RefuseOverloaded  = access.RefuseOverloaded
	RefuseOrigin      = access.RefuseOrigin
)

var refuseNames = [...]string{RefuseAuth, RefuseDraining, RefuseUpgrade, RefuseRateLimited, RefuseTooMany, RefuseOverloaded, RefuseOrigin}

// PublishRefusal says why a publish (HTTP or the Encore topic) was refused: the reasons
// of Snapshot.PublishRefusals. Every refusal is counted under exactly one.
type PublishRefusal int

// Publish refusal reasons.
const (
	RefusePublishInvalid PublishRefusal = iota // bad JSON, channel name, id, type or data size
	RefusePublishTooMany                       // a batch over MaxPublishEvents
	RefusePublishPayload                       // Config.CheckEvent refused it (a typed channel's payload)
	numPublishRefusals
)

var publishRefusalNames = [...]string{"invalid", "too_many", "payload"}

func (r PublishRefusal) String() string { return publishRefusalNames[r] }

// Metrics are the engine's counters. All fields are updated atomically; read them with
// Snapshot.
type Metrics struct {
	started time.Time

	active              atomic.Int64
	connectionsTotal    atomic.Uint64
	subscriptions       atomic.Int64
	eventsPublished     atomic.Uint64
	eventsDuplicate     atomic.Uint64
	eventsDispatched    atomic.Uint64
	eventsDelivered     atomic.Uint64
	eventsReplayed      atomic.Uint64
	eventsAlreadySeen   atomic.Uint64
	framesWritten       atomic.Uint64
	eventFrames         atomic.Uint64 // frames carrying events
	bytesRaw            atomic.Uint64
	bytesWire           atomic.Uint64
	bytesRead           atomic.Uint64
	healthReports       atomic.Uint64
	badFrames           atomic.Uint64
	messagesRateLimited atomic.Uint64
	recMemory           atomic.Uint64
	recBus              atomic.Uint64
	recFailed           atomic.Uint64
	budgetCloses        atomic.Uint64
	framesCompressed    atomic.Uint64
	lagFallbacks        atomic.Uint64
	windowFrames        atomic.Uint64 // frames lagging connections read from the window
	drops               [numDropReasons]atomic.Uint64
	disconnects         [numDisconnectReasons]atomic.Uint64
	refusals            [len(refuseNames)]atomic.Uint64
	publishRefusals     [numPublishRefusals]atomic.Uint64
	poll                pollCounters // long-poll and transport switches (poll_metrics.go)

	writeLatency   prometheus.Histogram // enqueue-to-write, seconds
	publishLatency prometheus.Histogram // publish to the bus's acknowledgement, seconds
}

func newMetrics() *Metrics {
	return &Metrics{
		started: time.Now(),
		writeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "realtime_write_latency_seconds",
			Help:    "Time from an event's dispatch to the write of the frame carrying it.",
			Buckets: latencyBuckets,
		}),
		publishLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "realtime_publish_duration_seconds",
			Help:    "Time from a publish (HTTP or topic) reaching the bus to the bus's acknowledgement.",
			Buckets: latencyBuckets,
		}),
	}
}

var latencyBuckets = []float64{.0005, .001, .002, .005, .01, .02, .03, .05, .075, .1, .2, .5, 1, 2, 5}

func (m *Metrics) drop(r DropReason, n int) { m.drops[r].Add(uint64(n)) }

func (m *Metrics) refusePublish(r PublishRefusal) { m.publishRefusals[r].Add(1) }

func (m *Metrics) refuse(reason string) {
	for i, n := range refuseNames {
		if n == reason {
			m.refusals[i].Add(1)
			return
		}
	}
	m.refusals[0].Add(1)
}

// LatencySummary is a distribution summarised as percentiles (milliseconds).
type LatencySummary = stats.Percentiles

// Snapshot is the JSON body of /v2/realtime/metrics: cumulative counters since start.
// It is also the instance's record in the fleet health bucket
// (monitoring/health.InstanceSnapshot is this type) and what cmd/realtime-bench reads.
type Snapshot struct {
	Instance          string  `json:"instance"`
	Time              int64   `json:"time"`
	UptimeSeconds     float64 `json:"uptimeSeconds"`
	Epoch             string  `json:"epoch"`
	HeadSeq           uint64  `json:"headSeq"`
	ActiveConnections int64   `json:"activeConnections"`
	ConnectionsTotal  uint64  `json:"connectionsTotal"`
	Subscriptions     int64   `json:"subscriptions"`
	EventsPublished   uint64  `json:"eventsPublished"`
	EventsDuplicate   uint64  `json:"eventsDuplicate"`
	EventsDispatched  uint64  `json:"eventsDispatched"`
	EventsDelivered   uint64  `json:"eventsDelivered"`
	EventsReplayed    uint64  `json:"eventsReplayed"`
	// EventsAlreadySeen: live events not written because the connection resumed with a
	// cursor at or past them (it was ahead of this instance).
	EventsAlreadySeen uint64            `json:"eventsAlreadySeen"`
	FramesWritten     uint64            `json:"framesWritten"`
	EventFrames       uint64            `json:"eventFrames"`
	EventsPerFrame    float64           `json:"eventsPerFrame"`
	BytesRaw          uint64            `json:"bytesRaw"`
	BytesWire         uint64            `json:"bytesWire"`
	BytesRead         uint64            `json:"bytesRead"`
	Drops             map[string]uint64 `json:"drops"`
	Disconnects       map[string]uint64 `json:"disconnects"`
	SlowDisconnects   uint64            `json:"slowDisconnects"`
	Recoveries        map[string]uint64 `json:"recoveries"`
	Refusals          map[string]uint64 `json:"refusals"`
	HealthReports     uint64            `json:"healthReports"`
	BadFrames         uint64            `json:"badFrames"`
	// PublishRefusals counts refused publishes (HTTP requests or topic messages) by
	// reason: invalid, too_many, payload (PublishRefusal).
	PublishRefusals map[string]uint64 `json:"publishRefusals"`
	// MessagesRateLimited counts client frames ignored for exceeding the message rate.
	MessagesRateLimited uint64         `json:"messagesRateLimited"`
	WriteLatencyMs      LatencySummary `json:"writeLatencyMs"`
	// WriteLatency is the enqueue-to-write distribution WriteLatencyMs summarises
	// (mergeable: the fleet's percentiles are exact merges of the instances').
	WriteLatency *stats.Histogram `json:"writeLatency,omitempty"`
	// PublishLatencyMs is how long the bus took to acknowledge publishes (appended, not
	// yet fanned out): the server's share of a publisher's answer time.
	PublishLatencyMs LatencySummary `json:"publishLatencyMs"`
	PollStats                       // longPoll* and transportSwitches (poll_metrics.go)
	// Breaker is the bus circuit breaker's state ("closed", "open", "half-open"), when
	// the bus has one (bus.Breaker).
	Breaker string `json:"breaker,omitempty"`
	// BatchWindowMs is the batch window in force (it widens under load, window.go).
	BatchWindowMs float64 `json:"batchWindowMs"`
	// QueuedBytes is what every connection's queue holds now, summed (a frame shared by
	// several connections counts for each); QueueBudget is its bound (Config.QueueBudget).
	QueuedBytes int64 `json:"queuedBytes"`
	QueueBudget int64 `json:"queueBudget"`
	// BudgetCloses counts connections closed (4105) to bring QueuedBytes back under
	// the budget.
	BudgetCloses uint64 `json:"budgetCloses"`
	// ParkedWriters is how many connections wait for their socket to take more;
	// WriteStalls counts those reset because it took nothing for WriteTimeout (or their
	// close did not finish in time).
	ParkedWriters int64  `json:"parkedWriters"`
	WriteStalls   uint64 `json:"writeStalls"`
	// ParkedReaders is how many connections wait for their client's next frame without
	// a goroutine (reader.go): on Linux, every idle one.
	ParkedReaders int64 `json:"parkedReaders"`
	// SlowLaneTurns counts writer turns run from the flusher's slow lane: for
	// connections whose peer did not keep up, after those of peers that did.
	SlowLaneTurns uint64 `json:"slowLaneTurns"`
	// FramesCompressed counts frames deflated: once per frame for every client that
	// negotiated compression, not once per client.
	FramesCompressed uint64 `json:"framesCompressed"`
	// LagFallbacks counts connections that fell behind (their socket did not take what
	// was queued) and read their events from the replay window instead of a queue;
	// WindowFrames counts the frames they read that way.
	LagFallbacks uint64 `json:"lagFallbacks"`
	WindowFrames uint64 `json:"windowFrames"`
	// Client is what browsers reported (health frames, Config.OnHealth). The engine
	// leaves it empty; the process that keeps the reports (encore.app/server) fills it
	// in the fleet record.
	Client stats.ClientSummary `json:"client"`
	// Channels are this instance's busiest channels (Engine.TopChannels). The engine
	// leaves it empty (channel names are not for the public metrics body); the server
	// fills it in the fleet record.
	Channels *ChannelTop `json:"channels,omitempty"`
}

func (m *Metrics) snapshot() Snapshot {
	s := Snapshot{
		Time:              time.Now().UnixMilli(),
		UptimeSeconds:     time.Since(m.started).Seconds(),
		ActiveConnections: m.active.Load(),
		ConnectionsTotal:  m.connectionsTotal.Load(),
		Subscriptions:     m.subscriptions.Load(),
		EventsPublished:   m.eventsPublished.Load(),
		EventsDuplicate:   m.eventsDuplicate.Load(),
		EventsDispatched:  m.eventsDispatched.Load(),
		EventsDelivered:   m.eventsDelivered.Load(),
		EventsReplayed:    m.eventsReplayed.Load(),
		EventsAlreadySeen: m.eventsAlreadySeen.Load(),
		FramesWritten:     m.framesWritten.Load(),
		EventFrames:       m.eventFrames.Load(),
		BytesRaw:          m.bytesRaw.Load(),
		BytesWire:         m.bytesWire.Load(),
		BytesRead:         m.bytesRead.Load(),
		Drops:             map[string]uint64{},
		Disconnects:       map[string]uint64{},
		Recoveries: map[string]uint64{
			"memory":        m.recMemory.Load(),
			"bus":           m.recBus.Load(),
			"not_recovered": m.recFailed.Load(),
		},
		Refusals:            map[string]uint64{},
		PublishRefusals:     map[string]uint64{},
		HealthReports:       m.healthReports.Load(),
		BadFrames:           m.badFrames.Load(),
		MessagesRateLimited: m.messagesRateLimited.Load(),
		PollStats:           m.poll.stats(),
		BudgetCloses:        m.budgetCloses.Load(),
		FramesCompressed:    m.framesCompressed.Load(),
		LagFallbacks:        m.lagFallbacks.Load(),
		WindowFrames:        m.windowFrames.Load(),
	}
	if s.EventFrames > 0 {
		s.EventsPerFrame = float64(s.EventsDelivered) / float64(s.EventFrames)
	}
	for i, n := range refuseNames {
		s.Refusals[n] = m.refusals[i].Load()
	}
	for i := range m.publishRefusals {
		s.PublishRefusals[PublishRefusal(i).String()] = m.publishRefusals[i].Load()
	}
	for i := range m.drops {
		s.Drops[DropReason(i).String()] = m.drops[i].Load()
	}
	for i := range m.disconnects {
		s.Disconnects[DisconnectReason(i).String()] = m.disconnects[i].Load()
	}
	s.SlowDisconnects = s.Disconnects[DiscSlowConsumer.String()]
	s.WriteLatency = histogramOf(m.writeLatency)
	s.WriteLatencyMs = s.WriteLatency.Summary()
	s.PublishLatencyMs = histogramOf(m.publishLatency).Summary()
	return s
}

// histogramOf turns the Prometheus histogram the writers record into (lock-free) into a
// stats.Histogram, so that every percentile comes from one implementation (DDSketch):
// each bucket's count is recorded at the middle of the bucket, the overflow bucket at
// the last bound.
func histogramOf(h prometheus.Histogram) *stats.Histogram {
	out := stats.NewHistogram()
	var d dto.Metric
	if err := h.Write(&d); err != nil || d.Histogram == nil {
		return out
	}
	buckets := d.Histogram.GetBucket()
	sort.Slice(buckets, func(i, j int) bool { return buckets[i].GetUpperBound() < buckets[j].GetUpperBound() })
	lower, below := 0.0, uint64(0)
	for _, b := range buckets {
		upper, cum := b.GetUpperBound(), b.GetCumulativeCount()
		if math.IsInf(upper, 1) {
			break
		}
		out.RecordN((lower+upper)/2*1000, cum-below)
		lower, below = upper, cum
	}
	out.RecordN(lower*1000, d.Histogram.GetSampleCount()-below) // above the last bound
	return out
}

// collector exports Snapshot to Prometheus without keeping a second set of counters.
type collector struct {
	e     *Engine
	descs map[string]*prometheus.Desc
}

func newCollector(e *Engine) *collector {
	c := &collector{e: e, descs: map[string]*prometheus.Desc{}}
	add := func(name, help string, labels ...string) {
		c.descs[name] = prometheus.NewDesc("realtime_"+name, help, labels, nil)
	}
	add("active_connections", "Open stream connections.")
	add("connections_total", "Stream connections accepted since start.")
	add("subscriptions", "Channel subscriptions held by open connections.")
	add("events_published_total", "Events appended to the bus through this instance.")
	add("events_duplicate_total", "Publishes answered as duplicates (same id).")
	add("events_dispatched_total", "Bus events fanned out by this instance.")
	add("events_delivered_total", "Events written to connections (live and replayed).")
	add("events_replayed_total", "Events written by recoveries.")
	add("events_already_seen_total", "Live events skipped because the connection resumed from a cursor past them.")
	add("frames_written_total", "Frames written to connections.")
	add("bytes_raw_total", "Frame bytes before compression.")
	add("bytes_wire_total", "Bytes written to sockets (after compression, with framing).")
	add("drops_total", "Events not delivered to a connection, by reason.", "reason")
	add("disconnects_total", "Connections ended, by reason.", "reason")
	add("recoveries_total", "Cursor recoveries, by source or failure.", "result")
	add("refusals_total", "Connections refused, by reason.", "reason")
	add("publish_refusals_total", "Publishes refused (HTTP requests and topic messages), by reason.", "reason")
	add("health_reports_total", "Client health reports received.")
	add("messages_rate_limited_total", "Client frames ignored for exceeding the per-connection message rate.")
	add("bus_breaker_state", "Bus circuit breaker: 1 for the current state (closed, open, half-open).", "state")
	add("queued_bytes", "Bytes queued to connections and not yet on their sockets, summed over connections.")
	add("queue_budget_bytes", "Bound of queued_bytes (the queue budget).")
	add("budget_closes_total", "Connections closed (4105) to bring queued bytes back under the budget.")
	add("parked_writers", "Connections waiting for their socket to take more.")
	add("parked_readers", "Connections waiting for their client's next frame without a goroutine.")
	add("write_stalls_total", "Connections reset because their socket took nothing for the write timeout.")
	add("slow_lane_turns_total", "Writer turns run after the others' because the peer did not keep up.")
	add("frames_compressed_total", "Frames deflated (once per frame for every compressing client).")
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.e.Snapshot()
	g := func(name string, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.GaugeValue, v, labels...)
	}
	k := func(name string, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(c.descs[name], prometheus.CounterValue, float64(v), labels...)
	}
	g("active_connections", float64(s.ActiveConnections))
	k("connections_total", s.ConnectionsTotal)
	g("subscriptions", float64(s.Subscriptions))
	k("events_published_total", s.EventsPublished)
	k("events_duplicate_total", s.EventsDuplicate)
	k("events_dispatched_total", s.EventsDispatched)
	k("events_delivered_total", s.EventsDelivered)
	k("events_replayed_total", s.EventsReplayed)
	k("events_already_seen_total", s.EventsAlreadySeen)
	k("frames_written_total", s.FramesWritten)
	k("bytes_raw_total", s.BytesRaw)
	k("bytes_wire_total", s.BytesWire)
	k("health_reports_total", s.HealthReports)
	k("messages_rate_limited_total", s.MessagesRateLimited)
	g("queued_bytes", float64(s.QueuedBytes))
	g("queue_budget_bytes", float64(s.QueueBudget))
	k("budget_closes_total", s.BudgetCloses)
	g("parked_writers", float64(s.ParkedWriters))
	g("parked_readers", float64(s.ParkedReaders))
	k("write_stalls_total", s.WriteStalls)
	k("slow_lane_turns_total", s.SlowLaneTurns)
	k("frames_compressed_total", s.FramesCompressed)
	if s.Breaker != "" {
		for _, st := range []string{bus.BreakerClosed, bus.BreakerOpen, bus.BreakerHalfOpen} {
			v := 0.0
			if st == s.Breaker {
				v = 1
			}
			g("bus_breaker_state", v, st)
		}
	}
	for r, v := range s.Drops {
		k("drops_total", v, r)
	}
	for r, v := range s.Disconnects {
		k("disconnects_total", v, r)
	}
	for r, v := range s.Recoveries {
		k("recoveries_total", v, r)
	}
	for r, v := range s.Refusals {
		k("refusals_total", v, r)
	}
	for r, v := range s.PublishRefusals {
		k("publish_refusals_total", v, r)
	}
}
