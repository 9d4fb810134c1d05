package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"encore.app/realtime/stream"
)

// loadConfig is one stream run: Clients connections spread over Channels channels (each
// client subscribes to ChannelsPerClient consecutive channels), Rate events/s of about
// Payload bytes for Duration.
type loadConfig struct {
	Label             string        `json:"label,omitempty"`
	Clients           int           `json:"clients"`
	Channels          int           `json:"channels"`
	ChannelsPerClient int           `json:"channelsPerClient"`
	Rate              int           `json:"rate"`
	Payload           int           `json:"payloadBytes"`
	Duration          time.Duration `json:"-"`
	Warmup            time.Duration `json:"-"`
	Drain             time.Duration `json:"-"`
	IdleSettle        time.Duration `json:"-"`
	Hold              time.Duration `json:"-"` // keep the connections idle this long (for profiling)
	Compress          bool          `json:"clientCompression"`
	DialConcurrency   int           `json:"-"`
	PublishWorkers    int           `json:"-"`
	ServerArgs        []string      `json:"serverArgs,omitempty"`
	Instances         int           `json:"instances,omitempty"` // servers the load was spread over
	Bus               string        `json:"bus,omitempty"`       // the bus spawned instances shared (nats, postgres)
	NATSNodes         int           `json:"natsNodes,omitempty"` // with bus nats
	DurationS         float64       `json:"durationSeconds"`
	WarmupS           float64       `json:"warmupSeconds"`
}

// loadResult is what a stream run measured. JSON field names are stable: the report
// reads them back.
type loadResult struct {
	Kind   string     `json:"kind"`
	Config loadConfig `json:"config"`
	Time   string     `json:"time"`

	Connected      int            `json:"connected"`
	ConnectFailed  int            `json:"connectFailed"`
	ConnectSeconds float64        `json:"connectSeconds"`
	ConnectMs      LatencySummary `json:"connectMs"`

	IdleRSSBaseline int64   `json:"idleRssBaselineBytes,omitempty"`
	IdleRSS         int64   `json:"idleRssBytes,omitempty"`
	IdleHeap        uint64  `json:"idleHeapInuseBytes,omitempty"`
	IdleHeapBase    uint64  `json:"idleHeapInuseBaselineBytes,omitempty"`
	IdleGoroutines  int     `json:"idleGoroutines,omitempty"`
	IdleBytesPerCon float64 `json:"idleBytesPerConnection,omitempty"`
	IdleHeapPerCon  float64 `json:"idleHeapBytesPerConnection,omitempty"`

	Published       uint64         `json:"published"`
	PublishErrors   uint64         `json:"publishErrors"`
	PublishRequests uint64         `json:"publishRequests"`
	PublishSeconds  float64        `json:"publishSeconds"`
	PublishedPerSec float64        `json:"publishedPerSecond"`
	PublishReqMs    LatencySummary `json:"publishRequestMs"`
	PayloadMean     float64        `json:"payloadMeanBytes"`

	Accounting      accounting     `json:"accounting"`
	DeliveredPerSec float64        `json:"deliveredPerSecond"`
	Latency         LatencySummary `json:"latencyMs"`
	DrainSeconds    float64        `json:"drainSeconds"`
	UnexpectedClose int            `json:"unexpectedCloses"`

	Server    serverDelta `json:"server"`
	CPU       CPUShare    `json:"cpu"`
	LoadedRSS int64       `json:"loadedRssBytes,omitempty"`
	Load      string      `json:"machineLoad"`
	LoadEnd   string      `json:"machineLoadEnd,omitempty"` // load average when the run ended
}

// serverDelta is the server's own counters over the publish phase.
type serverDelta struct {
	EventsDelivered uint64                `json:"eventsDelivered"`
	EventFrames     uint64                `json:"eventFrames"`
	BytesWire       uint64                `json:"bytesWire"`
	BytesRaw        uint64                `json:"bytesRaw"`
	BytesRead       uint64                `json:"bytesRead"`
	EventsPerFrame  float64               `json:"eventsPerFrame"`
	WireBytesPerEv  float64               `json:"wireBytesPerEvent"`
	RawBytesPerEv   float64               `json:"rawBytesPerEvent"`
	FramesPerEvent  float64               `json:"framesPerEvent"`
	CPUMicrosPerEv  float64               `json:"serverCpuMicrosPerEvent,omitempty"`
	Drops           map[string]uint64     `json:"drops,omitempty"`
	Disconnects     map[string]uint64     `json:"disconnects,omitempty"`
	WriteLatencyMs  stream.LatencySummary `json:"writeLatencyMs"`
	// PublishMs: the bus's acknowledgement time as the server measured it (since start).
	PublishMs stream.LatencySummary `json:"publishMs"`
}

func diffMaps(a, b map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range b {
		if d := v - a[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func delta(a, b stream.Snapshot) serverDelta {
	d := serverDelta{
		EventsDelivered: b.EventsDelivered - a.EventsDelivered,
		EventFrames:     b.EventFrames - a.EventFrames,
		BytesWire:       b.BytesWire - a.BytesWire,
		BytesRaw:        b.BytesRaw - a.BytesRaw,
		BytesRead:       b.BytesRead - a.BytesRead,
		Drops:           diffMaps(a.Drops, b.Drops),
		Disconnects:     diffMaps(a.Disconnects, b.Disconnects),
		WriteLatencyMs:  b.WriteLatencyMs,
		PublishMs:       b.PublishLatencyMs,
	}
	if d.EventFrames > 0 {
		d.EventsPerFrame = float64(d.EventsDelivered) / float64(d.EventFrames)
	}
	if d.EventsDelivered > 0 {
		n := float64(d.EventsDelivered)
		d.WireBytesPerEv = float64(d.BytesWire) / n
		d.RawBytesPerEv = float64(d.BytesRaw) / n
		d.FramesPerEvent = float64(d.EventFrames) / n
	}
	return d
}

func channelNames(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

// runLoad runs one stream scenario against t.
func runLoad(ctx context.Context, t *target, cfg loadConfig, logw io.Writer) (*loadResult, error) {
	cfg.DurationS, cfg.WarmupS = cfg.Duration.Seconds(), cfg.Warmup.Seconds()
	cfg.Channels = max(cfg.Channels, 1)
	cfg.ChannelsPerClient = min(max(cfg.ChannelsPerClient, 1), cfg.Channels)
	res := &loadResult{Kind: "load", Config: cfg, Time: time.Now().UTC().Format(time.RFC3339), Load: loadavg()}
	chans := channelNames(cfg.Channels, "public.bench.")
	span := uint64(float64(cfg.Rate)*(cfg.Duration.Seconds()+5)) + 1024
	f := newFleet(t, chans, cfg.Compress, span)

	if t.spawned() && cfg.IdleSettle > 0 {
		t.gc(ctx)
		time.Sleep(cfg.IdleSettle / 2)
		t.gc(ctx)
		res.IdleRSSBaseline = t.proc().RSS
		res.IdleHeapBase = t.heap(ctx).HeapInuse
	}
	logf(logw, "connecting %d clients over %d channels", cfg.Clients, cfg.Channels)
	took, err := f.dialAll(ctx, cfg.Clients, cfg.DialConcurrency, func(i int) []int {
		out := make([]int, cfg.ChannelsPerClient)
		for k := range out {
			out[k] = (i + k) % cfg.Channels
		}
		return out
	})
	res.Connected, res.ConnectFailed = len(f.clients), f.failed
	res.ConnectSeconds, res.ConnectMs = took.Seconds(), f.connect.summary()
	defer f.closeAll()
	if err != nil {
		logf(logw, "%d connects failed, first: %v", f.failed, err)
		if ctx.Err() != nil || res.Connected == 0 {
			return res, err
		}
	}
	if t.spawned() && cfg.IdleSettle > 0 && res.Connected > 0 {
		time.Sleep(cfg.IdleSettle / 2)
		t.gc(ctx)
		time.Sleep(time.Second)
		t.gc(ctx)
		res.IdleRSS = t.proc().RSS
		h := t.heap(ctx)
		res.IdleHeap, res.IdleGoroutines = h.HeapInuse, h.Goroutines
		res.IdleBytesPerCon = float64(res.IdleRSS-res.IdleRSSBaseline) / float64(res.Connected)
		res.IdleHeapPerCon = (float64(res.IdleHeap) - float64(res.IdleHeapBase)) / float64(res.Connected)
		logf(logw, "idle: RSS %.1f MiB (baseline %.1f), %.0f B/connection, heap %.0f B/connection",
			mib(res.IdleRSS), mib(res.IdleRSSBaseline), res.IdleBytesPerCon, res.IdleHeapPerCon)
	}
	if cfg.Hold > 0 {
		logf(logw, "holding %d connections for %s", res.Connected, cfg.Hold)
		select {
		case <-time.After(cfg.Hold):
		case <-ctx.Done():
		}
	}
	if cfg.Rate <= 0 || cfg.Duration <= 0 {
		return res, nil
	}

	m0, err := t.metrics(ctx)
	if err != nil {
		return res, fmt.Errorf("metrics: %w", err)
	}
	f.base.Store(m0.HeadSeq + 1)
	f.warmUp.Store(time.Now().Add(cfg.Warmup).UnixNano())
	led := newLedger()
	pub := newPublisher(t, chans, cfg.Rate, cfg.Payload, led)
	if cfg.PublishWorkers > 0 {
		pub.workers = cfg.PublishWorkers
	}
	cpu := startCPUOf(t)
	logf(logw, "publishing %d events/s of ~%d B for %s", cfg.Rate, cfg.Payload, cfg.Duration)
	pctx, pcancel := context.WithTimeout(ctx, cfg.Duration+cfg.Drain+30*time.Second)
	paced := pub.run(pctx, cfg.Duration)
	pcancel()
	// Wait until every client has every event, or the drain bound.
	drainStart := time.Now()
	expected := expectedTotal(f, led)
	for time.Since(drainStart) < cfg.Drain && f.received() < expected && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	res.DrainSeconds = time.Since(drainStart).Seconds()
	elapsed := time.Since(drainStart) + paced
	res.CPU = cpu.stop()
	m1, err := t.metrics(ctx)
	if err != nil {
		return res, fmt.Errorf("metrics: %w", err)
	}
	res.LoadedRSS = t.proc().RSS
	res.Server = delta(m0, m1)
	if res.Server.EventsDelivered > 0 && res.CPU.ServerCPU > 0 {
		res.Server.CPUMicrosPerEv = res.CPU.ServerCPU * 1e6 / float64(res.Server.EventsDelivered)
	}
	f.closeAll()
	var lat *latencies
	res.Accounting, lat, res.UnexpectedClose = f.tally(led)
	res.Latency = lat.summary()
	res.Published, res.PublishErrors, res.PublishRequests = pub.acked.Load(), pub.errors.Load(), pub.requests.Load()
	res.PublishSeconds = paced.Seconds()
	res.PublishedPerSec = float64(res.Published) / paced.Seconds()
	res.PublishReqMs = pub.reqLat.summary()
	res.PayloadMean = pub.avgPayload()
	res.DeliveredPerSec = float64(res.Accounting.Received) / elapsed.Seconds()
	if p := pub.lastErr.Load(); p != nil {
		logf(logw, "last publish error: %s", *p)
	}
	res.LoadEnd = loadavg()
	return res, nil
}

func expectedTotal(f *fleet, led *ledger) uint64 {
	per := map[int]uint64{}
	for i := range f.channels {
		per[i] = uint64(len(led.channel(i)))
	}
	var n uint64
	f.mu.Lock()
	for _, c := range f.clients {
		for _, ch := range c.channels {
			n += per[ch]
		}
	}
	f.mu.Unlock()
	return n
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func logf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, time.Now().Format("15:04:05 ")+format+"\n", args...)
	}
}

// printLoad writes the human table of one run.
func printLoad(w io.Writer, r *loadResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	c := r.Config
	fmt.Fprintf(tw, "scenario\t%s: %d clients, %d channels (%d per client), %d ev/s, %d B payload, %.0fs\n",
		c.Label, c.Clients, c.Channels, c.ChannelsPerClient, c.Rate, c.Payload, c.DurationS)
	if c.Instances > 1 || c.Bus != "" {
		bus := c.Bus
		if c.NATSNodes > 0 {
			bus = fmt.Sprintf("%s (%d node(s))", bus, c.NATSNodes)
		}
		fmt.Fprintf(tw, "instances\t%d realtimed on one %s bus\n", c.Instances, bus)
	}
	fmt.Fprintf(tw, "connected\t%d (failed %d) in %.2fs; connect p50 %.1f ms p99 %.1f ms max %.1f ms\n",
		r.Connected, r.ConnectFailed, r.ConnectSeconds, r.ConnectMs.P50, r.ConnectMs.P99, r.ConnectMs.Max)
	if r.IdleRSS > 0 {
		fmt.Fprintf(tw, "idle memory\t%.0f B/connection RSS, %.0f B/connection Go heap (RSS %.1f -> %.1f MiB, %d goroutines)\n",
			r.IdleBytesPerCon, r.IdleHeapPerCon, mib(r.IdleRSSBaseline), mib(r.IdleRSS), r.IdleGoroutines)
	}
	if c.Rate > 0 {
		a := r.Accounting
		fmt.Fprintf(tw, "published\t%d events of %.0f B mean payload (%.0f/s, %d requests, %d errors; request p99 %.1f ms)\n",
			r.Published, r.PayloadMean, r.PublishedPerSec, r.PublishRequests, r.PublishErrors, r.PublishReqMs.P99)
		fmt.Fprintf(tw, "delivered\t%d of %d (%.0f/s); lost %d, duplicated %d, reordered %d; drain %.2fs\n",
			a.Received, a.Expected, r.DeliveredPerSec, a.Lost, a.Duplicates, a.Reordered, r.DrainSeconds)
		fmt.Fprintf(tw, "latency\tp50 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms (%d samples, publisher send -> client receive)\n",
			r.Latency.P50, r.Latency.P95, r.Latency.P99, r.Latency.Max, r.Latency.Count)
		s := r.Server
		fmt.Fprintf(tw, "wire\t%.1f events/frame, %.3f frames/event, %.0f wire B/event (%.0f raw), server CPU %.2f µs/event\n",
			s.EventsPerFrame, s.FramesPerEvent, s.WireBytesPerEv, s.RawBytesPerEv, s.CPUMicrosPerEv)
		if len(s.Drops) > 0 || len(s.Disconnects) > 0 {
			fmt.Fprintf(tw, "server drops\t%v disconnects %v\n", s.Drops, s.Disconnects)
		}
		fmt.Fprintf(tw, "cpu (cores)\tbench %.2f, server %.2f, bus %.2f, others %.2f, machine %.2f of %d\n",
			r.CPU.BenchCores, r.CPU.ServerCores, r.CPU.BackendCores, r.CPU.OtherCores, r.CPU.MachineCores, r.CPU.Cores)
	}
	fmt.Fprintf(tw, "load average\t%s at the start, %s at the end\n", r.Load, r.LoadEnd)
	tw.Flush()
}
