package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"text/tabwriter"
	"time"
)

// memSample is one point of the soak's memory curve.
type memSample struct {
	Seconds     float64 `json:"s"`
	RSS         int64   `json:"rssBytes"`
	HeapInuse   uint64  `json:"heapInuseBytes"`
	Goroutines  int     `json:"goroutines"`
	Connections int64   `json:"connections"`
}

type soakResult struct {
	Kind         string      `json:"kind"`
	Time         string      `json:"time"`
	Config       loadConfig  `json:"config"`
	ChurnPerSec  float64     `json:"churnPerSecond"`
	WarmupS      float64     `json:"warmupSeconds"`
	Samples      []memSample `json:"samples"`
	Connects     uint64      `json:"connects"`
	Churned      uint64      `json:"churned"`
	ConnectFails int         `json:"connectFailures"`
	Published    uint64      `json:"published"`
	Server       serverDelta `json:"server"`
	// Plateau: mean RSS of the last quarter of the post-warm-up samples over the mean
	// of the first quarter, minus one (0.05 = grew 5%).
	RSSGrowth  float64  `json:"rssGrowth"`
	HeapGrowth float64  `json:"heapGrowth"`
	Plateau    bool     `json:"plateau"` // RSSGrowth <= 10%
	CPU        CPUShare `json:"cpu"`
	Load       string   `json:"machineLoad"`
}

func cmdSoak(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	var c common
	c.register(fs, common{clients: 1000, channels: 10, perClient: 1, rate: 200, payload: 200,
		duration: 10 * time.Minute, label: "soak"})
	churn := fs.Float64("churn", 0.02, "fraction of the clients replaced every second")
	sample := fs.Duration("sample", 0, "memory sample interval (default duration/60, at least 1s)")
	warm := fs.Float64("warmup-fraction", 0.25, "part of the run treated as warm-up for the plateau check")
	if err := fs.Parse(args); err != nil {
		return err
	}
	t, err := c.target(ctx, nil)
	if err != nil {
		return err
	}
	defer t.close()
	if !t.spawned() {
		return fmt.Errorf("soak needs a spawned server (no -url) to read its memory")
	}
	cfg := c.loadConfig()
	if *sample <= 0 {
		*sample = max(time.Second, cfg.Duration/60)
	}
	res := &soakResult{Kind: "soak", Time: time.Now().UTC().Format(time.RFC3339), Config: cfg,
		ChurnPerSec: *churn * float64(cfg.Clients), WarmupS: cfg.Duration.Seconds() * *warm, Load: loadavg()}
	chans := channelNames(cfg.Channels, "public.soak.")
	f := newFleet(t, chans, cfg.Compress, 1) // no per-event accounting: base stays 0
	assign := func(i int) []int { return []int{i % cfg.Channels} }
	if _, err := f.dialAll(ctx, cfg.Clients, cfg.DialConcurrency, assign); err != nil {
		logf(os.Stderr, "soak: initial connects: %v", err)
	}
	defer f.closeAll()
	m0, err := t.metrics(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	cpu := startCPU(t.pid())
	led := newLedger()
	pub := newPublisher(t, chans, cfg.Rate, cfg.Payload, led)
	pctx, pcancel := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	go func() { defer close(pubDone); pub.run(pctx, cfg.Duration) }()
	defer func() { pcancel(); <-pubDone }()

	take := func() {
		p := t.proc()
		h := t.heap(ctx)
		m, _ := t.metrics(ctx)
		s := memSample{Seconds: time.Since(start).Seconds(), RSS: p.RSS, HeapInuse: h.HeapInuse, Goroutines: h.Goroutines, Connections: m.ActiveConnections}
		res.Samples = append(res.Samples, s)
		logf(os.Stderr, "soak %5.0fs: RSS %.1f MiB, heap %.1f MiB, %d goroutines, %d connections",
			s.Seconds, mib(s.RSS), mib(int64(s.HeapInuse)), s.Goroutines, s.Connections)
	}
	take()
	churnT := time.NewTicker(time.Second)
	defer churnT.Stop()
	sampleT := time.NewTicker(*sample)
	defer sampleT.Stop()
	r := rand.New(rand.NewPCG(1, 2))
	var carry float64
	next := cfg.Clients
	end := time.After(cfg.Duration)
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-end:
			break loop
		case <-sampleT.C:
			take()
		case <-churnT.C:
			carry += *churn * float64(cfg.Clients)
			k := int(carry)
			carry -= float64(k)
			victims := f.pick(r, k)
			for _, v := range victims {
				f.remove(v)
				res.Churned++
			}
			for i := 0; i < len(victims); i++ {
				if _, err := f.dialOne(ctx, next, assign(next)); err != nil {
					res.ConnectFails++
				}
				next++
			}
		}
	}
	take()
	res.CPU = cpu.stop()
	m1, _ := t.metrics(ctx)
	res.Server = delta(m0, m1)
	res.Connects = m1.ConnectionsTotal
	res.Published = pub.acked.Load()
	res.RSSGrowth, res.HeapGrowth = growth(res.Samples, res.WarmupS)
	res.Plateau = res.RSSGrowth <= 0.10
	printSoak(os.Stdout, res)
	return writeJSON(c.jsonPath, res)
}

// growth compares the mean of the last quarter of the post-warm-up samples with the
// mean of the first quarter, for RSS and for the Go heap.
func growth(s []memSample, warmupS float64) (rss, heap float64) {
	var post []memSample
	for _, x := range s {
		if x.Seconds >= warmupS {
			post = append(post, x)
		}
	}
	if len(post) < 4 {
		return 0, 0
	}
	q := len(post) / 4
	mean := func(xs []memSample, f func(memSample) float64) float64 {
		var sum float64
		for _, x := range xs {
			sum += f(x)
		}
		return sum / float64(len(xs))
	}
	fr := func(m memSample) float64 { return float64(m.RSS) }
	fh := func(m memSample) float64 { return float64(m.HeapInuse) }
	first, last := post[:q], post[len(post)-q:]
	rss = mean(last, fr)/mean(first, fr) - 1
	if h := mean(first, fh); h > 0 {
		heap = mean(last, fh)/h - 1
	}
	return rss, heap
}

func printSoak(w io.Writer, r *soakResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "soak\t%d clients, %.0f replaced/s, %d ev/s over %d channels, %.0fs (warm-up %.0fs)\n",
		r.Config.Clients, r.ChurnPerSec, r.Config.Rate, r.Config.Channels, r.Config.DurationS, r.WarmupS)
	fmt.Fprintf(tw, "connections\t%d total, %d churned, %d connect failures\n", r.Connects, r.Churned, r.ConnectFails)
	fmt.Fprintf(tw, "delivered\t%d events (server), drops %v, disconnects %v\n", r.Server.EventsDelivered, r.Server.Drops, r.Server.Disconnects)
	if n := len(r.Samples); n > 0 {
		a, b := r.Samples[0], r.Samples[n-1]
		fmt.Fprintf(tw, "memory\tRSS %.1f -> %.1f MiB, heap %.1f -> %.1f MiB, goroutines %d -> %d\n",
			mib(a.RSS), mib(b.RSS), mib(int64(a.HeapInuse)), mib(int64(b.HeapInuse)), a.Goroutines, b.Goroutines)
	}
	verdict := "PLATEAU"
	if !r.Plateau {
		verdict = "GROWING"
	}
	fmt.Fprintf(tw, "plateau\t%s: RSS %+.1f%%, heap %+.1f%% (last vs first quarter after warm-up; limit 10%%)\n",
		verdict, 100*r.RSSGrowth, 100*r.HeapGrowth)
	fmt.Fprintf(tw, "cpu (cores)\tbench %.2f, server %.2f, others %.2f\n", r.CPU.BenchCores, r.CPU.ServerCores, r.CPU.OtherCores)
	tw.Flush()
}
