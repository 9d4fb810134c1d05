package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// The fault run: rtclient.Clients (reconnect with backoff, resume by cursor, dedup by
// id) receive a paced stream; mid-run the spawned server is killed with SIGKILL and
// restarted on the same data directory and port. Every event the bus acknowledged
// must reach every client of its channel.

type faultResult struct {
	Kind           string     `json:"kind"`
	Time           string     `json:"time"`
	Config         loadConfig `json:"config"`
	KillAtS        float64    `json:"killAtSeconds"`
	Kills          int        `json:"kills"`
	Killed         string     `json:"killed"`              // "server" or "nats-node"
	NATSNodes      int        `json:"natsNodes,omitempty"` // external cluster size (0: embedded)
	OutageS        float64    `json:"outageSeconds,omitempty"`
	RestartSeconds []float64  `json:"restartSeconds"` // SIGKILL -> /readyz answers (server) or accepts connections (node)
	// RecoveryMs: SIGKILL -> the client gets its first event on a new connection (server
	// kills) or its first event published after the kill (node kills).
	RecoveryMs    LatencySummary `json:"recoveryMs"`
	Accounting    accounting     `json:"accounting"`
	DedupDropped  uint64         `json:"dedupDropped"` // duplicates rtclient dropped by id
	Reconnects    uint64         `json:"reconnects"`
	Recovered     uint64         `json:"recovered"`
	NotRecovered  uint64         `json:"notRecovered"`
	Published     uint64         `json:"published"`
	PublishErrors uint64         `json:"publishErrors"`
	Latency       LatencySummary `json:"latencyMs"`
	DrainSeconds  float64        `json:"drainSeconds"`
	// NoEventAfterKill counts (client, kill) pairs with no event on a new connection
	// before the next kill or the end: clients that did not recover.
	NoEventAfterKill int    `json:"noEventAfterKill"`
	Load             string `json:"machineLoad"`
}

type faultClient struct {
	c        *rtclient.Client
	channels []int
	mu       sync.Mutex
	seen     *seqSet
	lat      *latencies
	got      atomic.Uint64
	firstAt  atomic.Int64 // unix nanos of the first event on a connection opened after the kill
	// reconnects at the kill: an event counts for recovery only on a newer connection
	// (not one read from the socket buffer just before the kill).
	recAtKill atomic.Uint64
	client    atomic.Pointer[rtclient.Client]
}

func cmdFault(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fault", flag.ContinueOnError)
	var c common
	c.register(fs, common{clients: 100, channels: 5, perClient: 1, rate: 200, payload: 200,
		duration: 20 * time.Second, label: "fault"})
	killAt := fs.Duration("kill-at", 0, "when to kill the server (default duration/3)")
	kills := fs.Int("kills", 1, "how many kill+restart cycles, spread over the run")
	natsNodes := fs.Int("nats-nodes", 0, "run on a NATS cluster of this many child processes (at least 3; stream R3) and kill NATS nodes, not the server")
	outage := fs.Duration("outage", 2*time.Second, "with -nats-nodes: how long a killed node stays down")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.url != "" {
		return fmt.Errorf("fault kills the server: it must be spawned (no -url)")
	}
	cfg := c.loadConfig()
	if *killAt <= 0 {
		*killAt = cfg.Duration / 3
	}
	var cl *natsCluster
	var extra []string
	if *natsNodes > 0 {
		if *natsNodes < 3 {
			return fmt.Errorf("-nats-nodes %d: a NATS cluster for R3 needs at least 3 nodes", *natsNodes)
		}
		var err error
		if cl, err = startNATSCluster(ctx, *natsNodes); err != nil {
			return err
		}
		defer cl.close()
		extra = []string{"-nats-url", cl.urls(), "-replicas", "3"}
		logf(os.Stderr, "fault: NATS cluster of %d nodes at %s", *natsNodes, cl.urls())
	}
	t, err := c.target(ctx, extra)
	if err != nil {
		return err
	}
	defer t.close()
	res := &faultResult{Kind: "fault", Time: time.Now().UTC().Format(time.RFC3339), Config: cfg, KillAtS: killAt.Seconds(),
		Killed: "server", NATSNodes: *natsNodes, Load: loadavg()}
	if cl != nil {
		res.Killed, res.OutageS = "nats-node", outage.Seconds()
	}
	chans := channelNames(cfg.Channels, "public.fault.")
	m0, err := t.metrics(ctx)
	if err != nil {
		return err
	}
	base := m0.HeadSeq + 1
	span := uint64(float64(cfg.Rate)*(cfg.Duration.Seconds()+30)) + 1024
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var killNanos atomic.Int64
	clients := make([]*faultClient, cfg.Clients)
	for i := range clients {
		fc := &faultClient{channels: []int{i % cfg.Channels}, seen: newSeqSet(base, span), lat: newLatencies()}
		clients[i] = fc
		fc.c = rtclient.Start(ctx, rtclient.Config{
			URL: t.streamURL(i), Channels: []string{chans[fc.channels[0]]},
			BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second, Logger: quiet,
			OnEvent: func(ev protocol.Event) {
				now := time.Now().UnixNano()
				fc.mu.Lock()
				if fc.seen.add(ev.Seq) {
					fc.got.Add(1)
				}
				var sent int64
				if bytes.HasPrefix(ev.Data, []byte(`{"t":`)) {
					if u, _, ok := parseUint(ev.Data, 5); ok {
						sent = int64(u)
						fc.lat.recordNanos(sent, now)
					}
				}
				if k := killNanos.Load(); k > 0 && fc.firstAt.Load() == 0 && now > k {
					if cl != nil {
						if sent > k { // published after the node died
							fc.firstAt.Store(now)
						}
					} else if c := fc.client.Load(); c != nil && c.Stats().Reconnects > fc.recAtKill.Load() {
						fc.firstAt.Store(now)
					}
				}
				fc.mu.Unlock()
			},
		})
		fc.client.Store(fc.c)
	}
	defer func() {
		for _, fc := range clients {
			fc.c.Close()
		}
	}()
	// Wait until every client is connected and subscribed (its first welcome).
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		m, err := t.metrics(ctx)
		if err == nil && m.Subscriptions >= int64(cfg.Clients) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	led := newLedger()
	pub := newPublisher(t, chans, cfg.Rate, cfg.Payload, led)
	pubDone := make(chan time.Duration, 1)
	rec := newLatencies()
	missed := 0
	harvest := func() {
		k := killNanos.Load()
		if k == 0 {
			return
		}
		for _, fc := range clients {
			if f := fc.firstAt.Load(); f > 0 {
				rec.recordNanos(k, f)
			} else {
				missed++
			}
		}
	}
	pubStart := time.Now()
	go func() { pubDone <- pub.run(ctx, cfg.Duration) }()
	for k := 0; k < *kills; k++ {
		at := *killAt + time.Duration(k)*(cfg.Duration-*killAt)/time.Duration(*kills)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(pubStart.Add(at))):
		}
		if cl != nil {
			i := k % len(cl.nodes)
			logf(os.Stderr, "fault: SIGKILL NATS node %s (acked so far %d)", cl.nodes[i].name, led.count())
			harvest()
			kt := time.Now()
			for _, fc := range clients {
				fc.firstAt.Store(0)
			}
			killNanos.Store(kt.UnixNano())
			cl.kill(i)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(*outage):
			}
			if err := cl.start(ctx, i); err != nil {
				return fmt.Errorf("restart NATS node: %w", err)
			}
			res.RestartSeconds = append(res.RestartSeconds, time.Since(kt).Seconds())
			res.Kills++
			logf(os.Stderr, "fault: NATS node %s back after %.2fs", cl.nodes[i].name, time.Since(kt).Seconds())
			continue
		}
		logf(os.Stderr, "fault: SIGKILL pid %d (acked so far %d)", t.pid(), led.count())
		harvest()
		kt := time.Now()
		for _, fc := range clients {
			fc.firstAt.Store(0)
			fc.recAtKill.Store(fc.c.Stats().Reconnects)
		}
		killNanos.Store(kt.UnixNano())
		t.kill()
		if err := t.start(ctx); err != nil {
			return fmt.Errorf("restart: %w", err)
		}
		res.RestartSeconds = append(res.RestartSeconds, time.Since(kt).Seconds())
		res.Kills++
		logf(os.Stderr, "fault: restarted in %.2fs", time.Since(kt).Seconds())
	}
	<-pubDone
	expected := func() uint64 {
		var n uint64
		per := map[int]uint64{}
		for i := range chans {
			per[i] = uint64(len(led.channel(i)))
		}
		for _, fc := range clients {
			n += per[fc.channels[0]]
		}
		return n
	}()
	dstart := time.Now()
	for time.Since(dstart) < cfg.Drain+10*time.Second && ctx.Err() == nil {
		var got uint64
		for _, fc := range clients {
			got += fc.got.Load()
		}
		if got >= expected {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	res.DrainSeconds = time.Since(dstart).Seconds()
	for _, fc := range clients {
		fc.c.Close()
	}
	pubm := map[int][]uint64{}
	for i := range chans {
		pubm[i] = led.channel(i)
	}
	harvest()
	lat := newLatencies()
	for _, fc := range clients {
		res.Accounting.account(fc.seen, fc.channels, pubm)
		lat.merge(fc.lat)
		st := fc.c.Stats()
		res.DedupDropped += st.Duplicates
		res.Reconnects += st.Reconnects
		res.Recovered += st.Recovered
		res.NotRecovered += st.NotRecovered
	}
	res.RecoveryMs = rec.summary()
	res.NoEventAfterKill = missed
	res.Latency = lat.summary()
	res.Published, res.PublishErrors = pub.acked.Load(), pub.errors.Load()
	printFault(os.Stdout, res)
	return writeJSON(c.jsonPath, res)
}

func printFault(w io.Writer, r *faultResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	a := r.Accounting
	what := "of the server"
	if r.Killed == "nats-node" {
		what = fmt.Sprintf("of a NATS node (cluster of %d, stream R3; %.0fs down)", r.NATSNodes, r.OutageS)
	}
	fmt.Fprintf(tw, "fault\t%d rtclient clients on %d channels, %d ev/s for %.0fs, %d SIGKILL+restart %s (first at %.0fs)\n",
		r.Config.Clients, r.Config.Channels, r.Config.Rate, r.Config.DurationS, r.Kills, what, r.KillAtS)
	fmt.Fprintf(tw, "published\t%d acked, %d failed publish attempts retried\n", r.Published, r.PublishErrors)
	fmt.Fprintf(tw, "delivered\t%d of %d; LOST %d, duplicates after dedup %d (dedup dropped %d)\n",
		a.Received, a.Expected, a.Lost, a.Duplicates, r.DedupDropped)
	fmt.Fprintf(tw, "restart\t%v s (SIGKILL -> healthy)\n", r.RestartSeconds)
	if r.Killed == "nats-node" {
		fmt.Fprintf(tw, "\t(recovery below: SIGKILL -> first event published after it)\n")
	}
	fmt.Fprintf(tw, "recovery\tSIGKILL -> first event after it, per client: p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
		r.RecoveryMs.P50, r.RecoveryMs.P99, r.RecoveryMs.Max)
	fmt.Fprintf(tw, "reconnects\t%d; recovered %d, not recovered %d; no event after a kill: %d\n", r.Reconnects, r.Recovered, r.NotRecovered, r.NoEventAfterKill)
	fmt.Fprintf(tw, "latency\tp50 %.1f ms, p99 %.1f ms, max %.1f ms (includes the outage)\n", r.Latency.P50, r.Latency.P99, r.Latency.Max)
	tw.Flush()
}
