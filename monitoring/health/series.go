package health

// Point is one sample of the fleet, taken every Step by the aggregator.
type Point struct {
	T                     int64   `json:"t"` // unix ms, aggregator clock
	Instances             int     `json:"instances"`
	Connections           uint64  `json:"connections"`
	EventsPublishedPerSec float64 `json:"eventsPublishedPerSec"`
	EventsDeliveredPerSec float64 `json:"eventsDeliveredPerSec"`
	FramesPerSec          float64 `json:"framesPerSec"`
	BytesRawPerSec        float64 `json:"bytesRawPerSec"`
	BytesWirePerSec       float64 `json:"bytesWirePerSec"`
	DropsPerSec           float64 `json:"dropsPerSec"`
	DisconnectsPerSec     float64 `json:"disconnectsPerSec"`
	SlowPerSec            float64 `json:"slowPerSec"` // slow-consumer disconnects
	LongPollPerSec        float64 `json:"longPollPerSec"`
	WriteP50Ms            float64 `json:"writeP50Ms"`
	WriteP99Ms            float64 `json:"writeP99Ms"`
	DeliveryP50Ms         float64 `json:"deliveryP50Ms"`
	DeliveryP99Ms         float64 `json:"deliveryP99Ms"`
	RTTP50Ms              float64 `json:"rttP50Ms"`
}

// Series is the fleet's time series, oldest point first.
type Series struct {
	StepMs int64   `json:"stepMs"`
	Points []Point `json:"points"`
}

// Ring is a fixed-capacity buffer of Points: once full, each Add overwrites the oldest.
// Not safe for concurrent use (the Aggregator guards it).
type Ring struct {
	buf  []Point
	next int  // index the next Add writes
	full bool // buf has wrapped at least once
}

// NewRing returns a Ring holding at most capacity points (at least 1).
func NewRing(capacity int) *Ring {
	if capacity < 1 {
		capacity = 1
	}
	return &Ring{buf: make([]Point, capacity)}
}

// Add appends p, dropping the oldest point when full.
func (r *Ring) Add(p Point) {
	r.buf[r.next] = p
	r.next++
	if r.next == len(r.buf) {
		r.next = 0
		r.full = true
	}
}

// Len is the number of points held.
func (r *Ring) Len() int {
	if r.full {
		return len(r.buf)
	}
	return r.next
}

// Cap is the capacity.
func (r *Ring) Cap() int { return len(r.buf) }

// Points returns a copy of the points, oldest first.
func (r *Ring) Points() []Point {
	out := make([]Point, 0, r.Len())
	if r.full {
		out = append(out, r.buf[r.next:]...)
	}
	return append(out, r.buf[:r.next]...)
}
