package stream

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Long-poll and transport-switch figures: Snapshot fields (PollStats) and the
// Prometheus collector.

// Poll refusal reasons (longPollRefusals in the metrics).
const (
	pollRefuseBadRequest = "bad_request" // 400: channels, cursor or timeout
	pollRefuseAuth       = "auth"        // Authenticate refused (401/403/429/503)
	pollRefuseForbidden  = "forbidden"   // Authorize refused a channel (403)
	pollRefuseUserLimit  = "user_limit"  // MaxPollsPerUser (429)
	pollRefuseCapacity   = "capacity"    // MaxPollWaiters (503)
	pollRefuseDraining   = "draining"    // shutting down (503)
	pollRefuseReplay     = "replay"      // no bus replay slot or the bus failed mid-way (503)
	pollRefuseOrigin     = "origin"      // a foreign browser Origin (403)
	numPollRefusals      = 8
)

var pollRefusalNames = [numPollRefusals]string{pollRefuseBadRequest, pollRefuseAuth, pollRefuseForbidden,
	pollRefuseUserLimit, pollRefuseCapacity, pollRefuseDraining, pollRefuseReplay, pollRefuseOrigin}

// pollCounters are the long-poll figures; part of Metrics.
type pollCounters struct {
	requests   atomic.Uint64
	waiting    atomic.Int64 // gauge: polls holding a waiter
	waits      atomic.Uint64
	wakeups    atomic.Uint64
	timeouts   atomic.Uint64
	cancelled  atomic.Uint64 // client went away while waiting
	events     atomic.Uint64
	answers    atomic.Uint64
	gzipped    atomic.Uint64
	bytesRaw   atomic.Uint64 // answer bytes before gzip
	bytesSent  atomic.Uint64 // answer bytes as sent
	refusals   [numPollRefusals]atomic.Uint64
	toPoll     atomic.Uint64 // stream connections moved to long-poll by the streaming flag
	refusedUse atomic.Uint64 // stream upgrades refused with 4300 (streaming not allowed)
	toStream   atomic.Uint64 // poll answers that told the client to stream again
}

func (pc *pollCounters) refuse(reason string) {
	for i, n := range pollRefusalNames {
		if n == reason {
			pc.refusals[i].Add(1)
			return
		}
	}
}

// PollStats are the long-poll and transport-switch figures of Snapshot.
type PollStats struct {
	LongPollRequests  uint64            `json:"longPollRequests"`
	LongPollWaiting   int64             `json:"longPollWaiting"`
	LongPollWaits     uint64            `json:"longPollWaits"`
	LongPollWakeups   uint64            `json:"longPollWakeups"`
	LongPollTimeouts  uint64            `json:"longPollTimeouts"`
	LongPollCancelled uint64            `json:"longPollCancelled"`
	LongPollEvents    uint64            `json:"longPollEvents"`
	LongPollGzipped   uint64            `json:"longPollGzipped"`
	LongPollBytesRaw  uint64            `json:"longPollBytesRaw"`
	LongPollBytesSent uint64            `json:"longPollBytesSent"`
	LongPollRefusals  map[string]uint64 `json:"longPollRefusals"`
	// TransportSwitches: "to_poll" stream connections moved by the flag, "refused"
	// stream upgrades answered 4300, "to_stream" poll answers saying stream again.
	TransportSwitches map[string]uint64 `json:"transportSwitches"`
}

func (pc *pollCounters) stats() PollStats {
	s := PollStats{
		LongPollRequests:  pc.requests.Load(),
		LongPollWaiting:   pc.waiting.Load(),
		LongPollWaits:     pc.waits.Load(),
		LongPollWakeups:   pc.wakeups.Load(),
		LongPollTimeouts:  pc.timeouts.Load(),
		LongPollCancelled: pc.cancelled.Load(),
		LongPollEvents:    pc.events.Load(),
		LongPollGzipped:   pc.gzipped.Load(),
		LongPollBytesRaw:  pc.bytesRaw.Load(),
		LongPollBytesSent: pc.bytesSent.Load(),
		LongPollRefusals:  make(map[string]uint64, numPollRefusals),
		TransportSwitches: map[string]uint64{
			"to_poll": pc.toPoll.Load(), "refused": pc.refusedUse.Load(), "to_stream": pc.toStream.Load(),
		},
	}
	for i, n := range pollRefusalNames {
		s.LongPollRefusals[n] = pc.refusals[i].Load()
	}
	return s
}

// pollCollector exports PollStats to Prometheus (realtime_long_poll_*).
type pollCollector struct {
	e                                                  *Engine
	requests, waiting, waits, wakeups, timeouts, evs   *prometheus.Desc
	cancelled, bytesRaw, bytesSent, refusals, switches *prometheus.Desc
}

func newPollCollector(e *Engine) *pollCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("realtime_"+name, help, labels, nil)
	}
	return &pollCollector{e: e,
		requests:  d("long_poll_requests_total", "Long-poll requests received."),
		waiting:   d("long_poll_waiting", "Long-polls waiting for events now."),
		waits:     d("long_poll_waits_total", "Long-polls that waited for events."),
		wakeups:   d("long_poll_wakeups_total", "Waiting long-polls answered by an event."),
		timeouts:  d("long_poll_timeouts_total", "Long-polls answered empty at their timeout."),
		cancelled: d("long_poll_cancelled_total", "Long-polls whose client left while waiting."),
		evs:       d("long_poll_events_total", "Events delivered by long-polling."),
		bytesRaw:  d("long_poll_bytes_raw_total", "Long-poll answer bytes before gzip."),
		bytesSent: d("long_poll_bytes_sent_total", "Long-poll answer bytes as sent."),
		refusals:  d("long_poll_refusals_total", "Long-polls refused, by reason.", "reason"),
		switches:  d("transport_switches_total", "Transport switches by the streaming flag.", "kind"),
	}
}

func (c *pollCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.waiting, c.waits, c.wakeups, c.timeouts, c.cancelled,
		c.evs, c.bytesRaw, c.bytesSent, c.refusals, c.switches} {
		ch <- d
	}
}

func (c *pollCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.e.metrics.poll.stats()
	k := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	k(c.requests, s.LongPollRequests)
	ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(s.LongPollWaiting))
	k(c.waits, s.LongPollWaits)
	k(c.wakeups, s.LongPollWakeups)
	k(c.timeouts, s.LongPollTimeouts)
	k(c.cancelled, s.LongPollCancelled)
	k(c.evs, s.LongPollEvents)
	k(c.bytesRaw, s.LongPollBytesRaw)
	k(c.bytesSent, s.LongPollBytesSent)
	for r, v := range s.LongPollRefusals {
		k(c.refusals, v, r)
	}
	for r, v := range s.TransportSwitches {
		k(c.switches, v, r)
	}
}
