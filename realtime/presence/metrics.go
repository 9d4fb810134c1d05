package presence

import "github.com/prometheus/client_golang/prometheus"

// Collector exports the tracker's figures to Prometheus (realtime_presence_*).
func (t *Tracker) Collector() prometheus.Collector { return collector{t} }

type collector struct{ t *Tracker }

var (
	descChannels  = prometheus.NewDesc("realtime_presence_channels", "Channels with members on this instance.", nil, nil)
	descMembers   = prometheus.NewDesc("realtime_presence_members", "Memberships (channel, user) on this instance.", nil, nil)
	descFollowed  = prometheus.NewDesc("realtime_presence_followed_channels", "Channels whose joins and leaves this instance follows.", nil, nil)
	descInstances = prometheus.NewDesc("realtime_presence_instances", "Live instances, this one included.", nil, nil)
	descWrites    = prometheus.NewDesc("realtime_presence_writes_total", "Presence summaries written to the store.", nil, nil)
	descWriteErrs = prometheus.NewDesc("realtime_presence_write_errors_total", "Presence summaries whose write failed (retried).", nil, nil)
	descDiffs     = prometheus.NewDesc("realtime_presence_diffs_total", "Join/leave diffs computed for followed channels.", nil, nil)
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descChannels, descMembers, descFollowed, descInstances, descWrites, descWriteErrs, descDiffs} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.t.Stats()
	g := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	k := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	g(descChannels, s.Channels)
	g(descMembers, s.Members)
	g(descFollowed, s.Followed)
	g(descInstances, len(s.Instances))
	k(descWrites, s.Writes)
	k(descWriteErrs, s.WriteErrors)
	k(descDiffs, s.Diffs)
}
