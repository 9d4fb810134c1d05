package health

// Overview is the merged state of the live fleet at one moment. Counters (Totals and the
// reason maps) are sums over live instances of their cumulative counters, so they drop
// when an instance leaves; rates are sums of per-instance rates and do not.
type Overview struct {
	Time      int64 `json:"time"` // unix ms, aggregator clock
	Instances int   `json:"instances"`

	Totals Totals `json:"totals"`
	Rates  Rates  `json:"rates"`

	Drops       map[string]uint64 `json:"drops"`
	Disconnects map[string]uint64 `json:"disconnects"`
	Recoveries  map[string]uint64 `json:"recoveries"`
	Refusals    map[string]uint64 `json:"refusals"`
	// Breakers counts instances per breaker state.
	Breakers map[string]uint64 `json:"breakers"`
	// Transports counts browser health reports per transport ("ws", "poll", ...).
	Transports map[string]uint64 `json:"transports"`

	// WriteLatency is the server's enqueue-to-write latency. WriteLatencyExact is true
	// when it was merged from every instance's histogram; false when some instance
	// only reported percentiles: then P50/P90 are count-weighted means of the
	// instances' values and P99/Max the largest (an upper bound).
	WriteLatency      Percentiles `json:"writeLatency"`
	WriteLatencyExact bool        `json:"writeLatencyExact"`
	// ClientRTT is the distribution of browsers' reported round-trip times (recent window).
	ClientRTT Percentiles `json:"clientRtt"`
	// DeliveryP50 is the distribution of browsers' own publish-to-receive medians, and
	// DeliveryP99 of their 99th percentiles (recent window). The dashboard's p50 is
	// DeliveryP50.P50 (the median browser's median) and its p99 DeliveryP99.P50 (the
	// median browser's p99).
	DeliveryP50 Percentiles `json:"deliveryP50"`
	DeliveryP99 Percentiles `json:"deliveryP99"`

	InstanceRows []InstanceRow `json:"instanceRows"`
	// Departed lists the instances that left in the last AggregatorOptions.DepartedFor,
	// oldest first: a clean shutdown, or an instance that stopped reporting.
	Departed []Departure `json:"departed"`
}

// Departure is an instance that left the fleet.
type Departure struct {
	Instance string `json:"instance"`
	At       int64  `json:"at"`       // unix ms, aggregator clock
	LastSeen int64  `json:"lastSeen"` // its last report, unix ms
	Reason   string `json:"reason"`   // DepartShutdown or DepartExpired
}

// Totals are summed cumulative counters of the live instances.
type Totals struct {
	ActiveConnections uint64  `json:"activeConnections"`
	ConnectionsTotal  uint64  `json:"connectionsTotal"`
	Subscriptions     uint64  `json:"subscriptions"`
	EventsPublished   uint64  `json:"eventsPublished"`
	EventsDispatched  uint64  `json:"eventsDispatched"`
	EventsDelivered   uint64  `json:"eventsDelivered"`
	EventsReplayed    uint64  `json:"eventsReplayed"`
	FramesWritten     uint64  `json:"framesWritten"`
	EventsPerFrame    float64 `json:"eventsPerFrame"` // EventsDelivered / FramesWritten
	BytesRaw          uint64  `json:"bytesRaw"`
	BytesWire         uint64  `json:"bytesWire"`
	Dropped           uint64  `json:"dropped"` // sum of Drops
	SlowDisconnects   uint64  `json:"slowDisconnects"`
	Refused           uint64  `json:"refused"` // sum of Refusals
	HealthReports     uint64  `json:"healthReports"`
	ClientReports     uint64  `json:"clientReports"`
	LongPollRequests  uint64  `json:"longPollRequests"`
}

// Rates are per-second rates derived from each instance's two latest snapshots.
type Rates struct {
	EventsPublished  float64 `json:"eventsPublished"`
	EventsDelivered  float64 `json:"eventsDelivered"`
	FramesWritten    float64 `json:"framesWritten"`
	BytesRaw         float64 `json:"bytesRaw"`
	BytesWire        float64 `json:"bytesWire"`
	Dropped          float64 `json:"dropped"`
	ConnectionsOpen  float64 `json:"connectionsOpened"`
	Disconnects      float64 `json:"disconnects"`     // all reasons
	SlowDisconnects  float64 `json:"slowDisconnects"` // slow consumers closed
	LongPollRequests float64 `json:"longPollRequests"`
}

// InstanceRow is one live instance in the instance table.
type InstanceRow struct {
	Instance          string  `json:"instance"`
	AgeSeconds        float64 `json:"ageSeconds"` // since the aggregator last heard from it
	UptimeSeconds     float64 `json:"uptimeSeconds"`
	ActiveConnections uint64  `json:"activeConnections"`
	Subscriptions     uint64  `json:"subscriptions"`
	EventsPerSec      float64 `json:"eventsPerSec"` // delivered
	FramesPerSec      float64 `json:"framesPerSec"`
	Dropped           uint64  `json:"dropped"`
	Breaker           string  `json:"breaker"`
	WriteP99Ms        float64 `json:"writeP99Ms"`
	BytesRaw          uint64  `json:"bytesRaw"`
	BytesWire         uint64  `json:"bytesWire"`
	LongPollRequests  uint64  `json:"longPollRequests"`
	// Stale: not heard from for AggregatorOptions.StaleAfter (it may have stopped
	// reporting; it leaves the fleet at the TTL).
	Stale bool `json:"stale"`
}
