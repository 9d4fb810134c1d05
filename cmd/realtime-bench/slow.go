package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"
)

// The slow scenario is issue 17's isolation test: many connections that never read
// (small receive buffer, as a stalled mobile socket or an attacker) beside a few
// healthy readers. It runs the same workload twice on fresh servers, without and with
// the stalled connections, and reports the healthy readers' latency in both, whether
// any healthy reader was closed or missed an event, when the server closed the stalled
// sockets, and the server's peak RSS.

// slowConfig is one slow run.
type slowConfig struct {
	Healthy    int           `json:"healthy"`
	Stalled    int           `json:"stalled"`
	RcvBuf     int           `json:"stalledRcvBufBytes"`
	Rate       int           `json:"rate"`
	Payload    int           `json:"payloadBytes"`
	Duration   time.Duration `json:"-"`
	DurationS  float64       `json:"durationSeconds"`
	After      time.Duration `json:"-"` // how long RSS is watched after publishing ends
	ServerArgs []string      `json:"serverArgs,omitempty"`
}

// slowRun is what one run (with or without stalled connections) measured.
type slowRun struct {
	Stalled          int            `json:"stalled"`
	Latency          LatencySummary `json:"healthyLatencyMs"`
	HealthyClosed    int            `json:"healthyClosed"`
	Accounting       accounting     `json:"healthyAccounting"`
	StalledConnected int            `json:"stalledConnected"`
	StalledClosed    int            `json:"stalledClosed"`
	// StalledCloseS: seconds from the start of publishing until the server closed each
	// stalled socket (seen by the bench as a hang-up), as percentiles.
	StalledCloseP50 float64 `json:"stalledCloseP50Seconds"`
	StalledCloseMax float64 `json:"stalledCloseMaxSeconds"`
	// Memory of the server process.
	IdleRSS       int64          `json:"idleRssBytes"`    // connected, before publishing
	PeakRSS       int64          `json:"peakRssBytes"`    // highest sample while publishing and after
	EndRSS        int64          `json:"endRssBytes"`     // last sample, After past publishing
	PeakSockMem   int64          `json:"peakTcpMemBytes"` // /proc/net/sockstat TCP mem (whole machine, kernel)
	EndSockMem    int64          `json:"endTcpMemBytes"`
	Published     uint64         `json:"published"`
	PublishErrors uint64         `json:"publishErrors"`
	PublishReqMs  LatencySummary `json:"publishRequestMs"`
	Server        serverDelta    `json:"server"`
	CPU           CPUShare       `json:"cpu"`
	Load          string         `json:"machineLoad"`
	Samples       []slowSample   `json:"samples"`
	// WorstPerSecond is the healthy readers' worst latency (ms) of the events sent in
	// each second of the run.
	WorstPerSecond []float64 `json:"worstLatencyPerSecondMs"`
}

// slowSample is one point of a run's memory curve.
type slowSample struct {
	Seconds     float64 `json:"s"`
	RSS         int64   `json:"rssBytes"`
	Connections int64   `json:"connections"`
	StalledOpen int     `json:"stalledOpen"`
}

type slowResult struct {
	Kind     string     `json:"kind"`
	Time     string     `json:"time"`
	Config   slowConfig `json:"config"`
	Baseline *slowRun   `json:"baseline,omitempty"`
	Run      *slowRun   `json:"run"`
	// P99Ratio is the healthy p99 with the stalled connections over the p99 without.
	P99Ratio float64 `json:"p99Ratio,omitempty"`
}

func cmdSlow(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("slow", flag.ContinueOnError)
	var c common
	c.register(fs, common{clients: 50, channels: 1, perClient: 1, rate: 200, payload: 2000,
		duration: 30 * time.Second, label: "slow"})
	stalled := fs.Int("stalled", 2000, "connections that never read")
	rcvbuf := fs.Int("rcvbuf", 4096, "SO_RCVBUF of the stalled connections")
	baseline := fs.Bool("baseline", true, "first run the same workload without the stalled connections")
	after := fs.Duration("after", 10*time.Second, "watch the server's RSS this long after publishing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.url != "" {
		return errors.New("slow needs a spawned server (no -url): it reads the server's RSS")
	}
	cleanup, err := c.ensureBin(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	cfg := slowConfig{Healthy: c.clients, Stalled: *stalled, RcvBuf: *rcvbuf, Rate: c.rate, Payload: c.payload,
		Duration: c.duration, DurationS: c.duration.Seconds(), After: *after, ServerArgs: strings.Fields(c.serverArgs)}
	res := &slowResult{Kind: "slow", Time: time.Now().UTC().Format(time.RFC3339), Config: cfg}
	if *baseline {
		logf(os.Stderr, "baseline: %d healthy readers, no stalled connections", cfg.Healthy)
		r, err := runSlow(ctx, &c, cfg, 0, os.Stderr)
		if err != nil {
			return err
		}
		res.Baseline = r
	}
	logf(os.Stderr, "run: %d healthy readers beside %d stalled connections", cfg.Healthy, cfg.Stalled)
	r, err := runSlow(ctx, &c, cfg, cfg.Stalled, os.Stderr)
	if r != nil {
		res.Run = r
		if res.Baseline != nil && res.Baseline.Latency.P99 > 0 {
			res.P99Ratio = r.Latency.P99 / res.Baseline.Latency.P99
		}
		printSlow(os.Stdout, res)
		if werr := writeJSON(c.jsonPath, res); werr != nil {
			return werr
		}
	}
	return err
}

// stalledConn is a connection that subscribed and never reads again.
type stalledConn struct {
	nc     *net.TCPConn
	closed time.Duration // since publishing started; 0 while open
}

// dialStalled opens a WebSocket with a small receive buffer, waits for the subscribe
// answer and then never reads again.
func dialStalled(ctx context.Context, wsURL string, rcvbuf int) (*stalledConn, error) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	rc, err := rawDialWith(ctx, &d, wsURL, 4096)
	if err != nil {
		return nil, err
	}
	_ = rc.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	for done := false; !done; {
		if err := rc.next(func(b []byte) { done = kindOf(b) == frameSubscribed }); err != nil {
			rc.closeNow()
			return nil, fmt.Errorf("before subscribed: %w", err)
		}
	}
	_ = rc.nc.SetReadDeadline(time.Time{})
	return &stalledConn{nc: rc.nc.(*net.TCPConn)}, nil
}

// hungUp reports whether the server closed the socket (FIN or RST), without reading.
func (s *stalledConn) hungUp() bool {
	rc, err := s.nc.SyscallConn()
	if err != nil {
		return true
	}
	var gone bool
	_ = rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(p, 0); err == nil && n > 0 {
			gone = p[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return gone
}

// sockstatMem is the kernel's TCP buffer memory (all sockets of the machine), in bytes.
func sockstatMem() int64 {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "TCP:") {
			continue
		}
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "mem" {
				pages, _ := strconv.ParseInt(f[i+1], 10, 64)
				return pages * int64(os.Getpagesize())
			}
		}
	}
	return 0
}

func runSlow(ctx context.Context, c *common, cfg slowConfig, nStalled int, logw io.Writer) (*slowRun, error) {
	t, err := c.target(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer t.close()
	run := &slowRun{Stalled: nStalled, Load: loadavg()}
	chans := channelNames(1, "public.slow.")
	span := uint64(float64(cfg.Rate)*(cfg.Duration.Seconds()+5)) + 1024
	f := newFleet(t, chans, c.compress, span)
	defer f.closeAll()
	if _, err := f.dialAll(ctx, cfg.Healthy, c.dialConc, func(int) []int { return []int{0} }); err != nil {
		return nil, fmt.Errorf("healthy clients: %w", err)
	}

	var stalled []*stalledConn
	defer func() {
		for _, s := range stalled {
			_ = s.nc.Close()
		}
	}()
	if nStalled > 0 {
		logf(logw, "connecting %d stalled clients (SO_RCVBUF %d)", nStalled, cfg.RcvBuf)
		var mu sync.Mutex
		sem := make(chan struct{}, max(c.dialConc, 1))
		var wg sync.WaitGroup
		var firstErr error
		u := t.streamURL(0) + "?channels=" + chans[0]
		for range nStalled {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				s, err := dialStalled(ctx, u, cfg.RcvBuf)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				stalled = append(stalled, s)
			}()
		}
		wg.Wait()
		run.StalledConnected = len(stalled)
		if firstErr != nil {
			logf(logw, "%d stalled connects failed, first: %v", nStalled-len(stalled), firstErr)
		}
	}
	t.gc(ctx)
	time.Sleep(time.Second)
	run.IdleRSS = t.proc().RSS

	m0, err := t.metrics(ctx)
	if err != nil {
		return nil, err
	}
	f.base.Store(m0.HeadSeq + 1)
	f.warmUp.Store(time.Now().UnixNano())
	led := newLedger()
	pub := newPublisher(t, chans, cfg.Rate, cfg.Payload, led)
	cpu := startCPU(t.pid())
	start := time.Now()
	f.timeline = newTimeline(start)

	// Sample memory, connections and hang-ups until the run ends.
	sampleCtx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		n := 0
		for {
			select {
			case <-sampleCtx.Done():
				return
			case now := <-tick.C:
				el := now.Sub(start)
				open := 0
				for _, s := range stalled {
					if s.closed == 0 {
						if s.hungUp() {
							s.closed = el
						} else {
							open++
						}
					}
				}
				rss := t.proc().RSS
				run.PeakRSS = max(run.PeakRSS, rss)
				run.PeakSockMem = max(run.PeakSockMem, sockstatMem())
				if n%5 == 0 {
					var conns int64
					if m, err := t.metrics(sampleCtx); err == nil {
						conns = m.ActiveConnections
					}
					run.Samples = append(run.Samples, slowSample{Seconds: el.Seconds(), RSS: rss, Connections: conns, StalledOpen: open})
				}
				n++
			}
		}
	}()

	logf(logw, "publishing %d events/s of ~%d B for %s", cfg.Rate, cfg.Payload, cfg.Duration)
	pctx, pcancel := context.WithTimeout(ctx, cfg.Duration+30*time.Second)
	paced := pub.run(pctx, cfg.Duration)
	pcancel()
	expected := expectedTotal(f, led)
	drainStart := time.Now()
	for time.Since(drainStart) < c.drain && f.received() < expected && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	run.CPU = cpu.stop()
	m1, err := t.metrics(ctx)
	if err != nil {
		stopSampling()
		<-sampled
		return nil, err
	}
	run.Server = delta(m0, m1)
	if run.Server.EventsDelivered > 0 && run.CPU.ServerCPU > 0 {
		run.Server.CPUMicrosPerEv = run.CPU.ServerCPU * 1e6 / float64(run.Server.EventsDelivered)
	}
	// Watch memory return after the stalled sockets are gone.
	select {
	case <-time.After(cfg.After - time.Since(drainStart)):
	case <-ctx.Done():
	}
	t.gc(ctx)
	time.Sleep(500 * time.Millisecond)
	stopSampling()
	<-sampled
	run.EndRSS = t.proc().RSS
	run.EndSockMem = sockstatMem()
	_ = paced

	f.closeAll()
	var lat *latencies
	run.Accounting, lat, run.HealthyClosed = f.tally(led)
	run.Latency = lat.summary()
	run.WorstPerSecond = f.timeline.seconds()
	run.Published, run.PublishErrors, run.PublishReqMs = pub.acked.Load(), pub.errors.Load(), pub.reqLat.summary()
	var closes []float64
	for _, s := range stalled {
		if s.closed > 0 {
			closes = append(closes, s.closed.Seconds())
		}
	}
	run.StalledClosed = len(closes)
	if len(closes) > 0 {
		slices.Sort(closes)
		run.StalledCloseP50 = closes[len(closes)/2]
		run.StalledCloseMax = closes[len(closes)-1]
	}
	return run, nil
}

func printSlow(w io.Writer, r *slowResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	c := r.Config
	fmt.Fprintf(tw, "scenario\tslow: %d healthy readers, %d stalled (SO_RCVBUF %d), %d ev/s of %d B, %.0fs\n",
		c.Healthy, c.Stalled, c.RcvBuf, c.Rate, c.Payload, c.DurationS)
	for _, run := range []*slowRun{r.Baseline, r.Run} {
		if run == nil {
			continue
		}
		a := run.Accounting
		fmt.Fprintf(tw, "stalled %d\thealthy p50 %.1f ms p99 %.1f ms max %.1f ms; closed %d; received %d of %d (lost %d, dup %d)\n",
			run.Stalled, run.Latency.P50, run.Latency.P99, run.Latency.Max, run.HealthyClosed, a.Received, a.Expected, a.Lost, a.Duplicates)
		if run.Stalled > 0 {
			fmt.Fprintf(tw, "\tstalled connected %d, closed by the server %d (p50 %.1fs, last %.1fs after publishing started)\n",
				run.StalledConnected, run.StalledClosed, run.StalledCloseP50, run.StalledCloseMax)
		}
		fmt.Fprintf(tw, "\tRSS idle %.0f MiB, peak %.0f MiB, end %.0f MiB; kernel TCP memory peak %.0f MiB, end %.0f MiB\n",
			mib(run.IdleRSS), mib(run.PeakRSS), mib(run.EndRSS), mib(run.PeakSockMem), mib(run.EndSockMem))
		fmt.Fprintf(tw, "\tpublished %d (%d errors, request p99 %.1f ms); server write p99 %.1f ms; drops %v; disconnects %v\n",
			run.Published, run.PublishErrors, run.PublishReqMs.P99, run.Server.WriteLatencyMs.P99, run.Server.Drops, run.Server.Disconnects)
		fmt.Fprintf(tw, "\tcpu: server %.2f cores (%.2f µs/event), bench %.2f, others %.2f; load %s\n",
			run.CPU.ServerCores, run.Server.CPUMicrosPerEv, run.CPU.BenchCores, run.CPU.OtherCores, run.Load)
		var ws []string
		for _, w := range run.WorstPerSecond {
			ws = append(ws, strconv.FormatFloat(w, 'f', 0, 64))
		}
		fmt.Fprintf(tw, "\tworst healthy latency per second (ms): %s\n", strings.Join(ws, " "))
	}
	if r.P99Ratio > 0 {
		fmt.Fprintf(tw, "p99 ratio\t%.2fx (with stalled / without; target <= 2)\n", r.P99Ratio)
	}
	tw.Flush()
}
