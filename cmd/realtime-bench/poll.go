package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"encore.app/realtime/protocol"
)

// The long-poll baseline simulates the old frontend: every tab keeps one long-poll
// request open per feed (10 by default) against GET /v2/realtime/poll, each with its own
// cursor. The same workload then runs over the stream (one socket per tab subscribed to
// every feed), so requests and bytes saved are measured, not assumed.

// countingConn counts the bytes that cross a client socket, both ways.
type countingConn struct {
	net.Conn
	up, down *atomic.Uint64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.down.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.up.Add(uint64(n))
	return n, err
}

// pollSide is what the long-poll half of the comparison measured.
type pollSide struct {
	Feeds           int            `json:"feedsPerClient"`
	Requests        uint64         `json:"requests"`
	RequestsPerSec  float64        `json:"requestsPerSecond"`
	Errors          uint64         `json:"errors"`
	EmptyAnswers    uint64         `json:"emptyAnswers"`
	BytesUp         uint64         `json:"bytesUp"`
	BytesDown       uint64         `json:"bytesDown"`
	BytesPerEvent   float64        `json:"bytesPerEvent"` // up+down per delivered event
	Accounting      accounting     `json:"accounting"`
	DeliveredPerSec float64        `json:"deliveredPerSecond"`
	Latency         LatencySummary `json:"latencyMs"`
	Published       uint64         `json:"published"`
	CPU             CPUShare       `json:"cpu"`
	CPUMicrosPerEv  float64        `json:"serverCpuMicrosPerEvent"`
	Transports      map[string]int `json:"transports,omitempty"`
}

type pollResult struct {
	Kind   string      `json:"kind"`
	Time   string      `json:"time"`
	Config loadConfig  `json:"config"`
	Poll   *pollSide   `json:"poll"`
	Stream *loadResult `json:"stream"`
	// Stream bytes per delivered event both ways (server wire out + read in).
	StreamBytesPerEvent float64 `json:"streamBytesPerEvent"`
	RequestsSaved       float64 `json:"requestsSavedPerSecond"`
	BytesRatio          float64 `json:"pollToStreamBytesRatio"`
	CPURatio            float64 `json:"pollToStreamCpuRatio"`
	Load                string  `json:"machineLoad"`
}

func runPoll(ctx context.Context, t *target, cfg loadConfig, logw io.Writer) (*pollSide, error) {
	feeds := cfg.Channels
	side := &pollSide{Feeds: feeds, Transports: map[string]int{}}
	chans := channelNames(feeds, "public.feed.")
	var up, down atomic.Uint64
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = cfg.Clients*feeds + 16
	tr.MaxIdleConns = tr.MaxIdleConnsPerHost
	tr.IdleConnTimeout = time.Minute
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, up: &up, down: &down}, nil
	}
	hc := &http.Client{Transport: tr}
	defer tr.CloseIdleConnections()

	type feedLoop struct {
		ch      int
		seen    *seqSet
		lat     *latencies
		cursor  string
		got     atomic.Uint64
		primed  chan struct{} // closed after the first (cursor-less) answer
		reqs    uint64
		errs    uint64
		empty   uint64
		transpt string
	}
	span := uint64(float64(cfg.Rate)*(cfg.Duration.Seconds()+5)) + 1024
	var base atomic.Uint64
	warm := time.Now().Add(cfg.Warmup).UnixNano()
	loops := make([]*feedLoop, 0, cfg.Clients*feeds)
	for i := 0; i < cfg.Clients; i++ {
		for j := 0; j < feeds; j++ {
			loops = append(loops, &feedLoop{ch: j, lat: newLatencies(), primed: make(chan struct{})})
		}
	}
	// Probe: a server without the endpoint would leave every loop failing.
	probe, err := hc.Get(t.urls[0] + "/v2/realtime/poll?timeout=0&channels=" + chans[0])
	if err != nil {
		return side, fmt.Errorf("poll probe: %w", err)
	}
	probe.Body.Close()
	if probe.StatusCode != 200 {
		return side, fmt.Errorf("GET /v2/realtime/poll: HTTP %d (does this server have the long-poll endpoint?)", probe.StatusCode)
	}
	pctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	for k, fl := range loops {
		wg.Add(1)
		go func(k int, fl *feedLoop) {
			defer wg.Done()
			u := t.urls[k%len(t.urls)] + "/v2/realtime/poll?timeout=25s&channels=" + url.QueryEscape(chans[fl.ch])
			var ans struct {
				Cursor    protocol.Cursor `json:"cursor"`
				Transport string          `json:"transport"`
				RetryMs   int64           `json:"retryMs"`
			}
			primed := false
			for pctx.Err() == nil {
				full := u
				if fl.cursor != "" {
					full += "&cursor=" + url.QueryEscape(fl.cursor)
				}
				req, _ := http.NewRequestWithContext(pctx, "GET", full, nil)
				resp, err := hc.Do(req)
				if err != nil {
					if pctx.Err() == nil {
						fl.errs++
						time.Sleep(100 * time.Millisecond)
					}
					continue
				}
				fl.reqs++
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				now := time.Now().UnixNano()
				if err != nil || resp.StatusCode != 200 {
					if pctx.Err() == nil {
						fl.errs++
						wait := time.Second
						if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
							wait = time.Duration(s) * time.Second
						}
						time.Sleep(wait)
					}
					continue
				}
				if b0 := base.Load(); b0 > 0 {
					if fl.seen == nil {
						fl.seen = newSeqSet(b0, span)
					}
					n := scanEvents(b, func(ev scannedEvent) {
						if ev.Seq >= b0 && fl.seen.add(ev.Seq) {
							fl.got.Add(1)
						}
						if ev.Sent >= warm {
							fl.lat.recordNanos(ev.Sent, now)
						}
					})
					if n == 0 {
						fl.empty++
					}
				}
				if err := json.Unmarshal(b, &ans); err == nil {
					fl.cursor = protocol.FormatCursor(ans.Cursor)
					fl.transpt = ans.Transport
				}
				if !primed {
					primed = true
					close(fl.primed)
				}
			}
		}(k, fl)
	}
	for _, fl := range loops {
		select {
		case <-fl.primed:
		case <-ctx.Done():
			return side, ctx.Err()
		}
	}
	logf(logw, "poll: %d clients x %d feeds primed (%d open polls)", cfg.Clients, feeds, len(loops))
	m0, err := t.metrics(ctx)
	if err != nil {
		return side, err
	}
	base.Store(m0.HeadSeq + 1)
	up0, down0 := up.Load(), down.Load()
	var reqs0 uint64 // requests before publishing (priming): excluded from the rate
	for _, fl := range loops {
		reqs0 += fl.reqs
	}
	led := newLedger()
	pub := newPublisher(t, chans, cfg.Rate, cfg.Payload, led)
	cpu := startCPU(t.pid())
	start := time.Now()
	paced := pub.run(ctx, cfg.Duration)
	var expected uint64
	for j := range chans {
		expected += uint64(len(led.channel(j)) * cfg.Clients)
	}
	received := func() uint64 {
		var n uint64
		for _, fl := range loops {
			n += fl.got.Load()
		}
		return n
	}
	dstart := time.Now()
	for time.Since(dstart) < cfg.Drain && received() < expected && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	elapsed := time.Since(start)
	side.CPU = cpu.stop()
	upN, downN := up.Load()-up0, down.Load()-down0
	stop()
	wg.Wait()
	pub2 := map[int][]uint64{}
	for j := range chans {
		pub2[j] = led.channel(j)
	}
	lat := newLatencies()
	for _, fl := range loops {
		s := fl.seen
		if s == nil {
			s = newSeqSet(base.Load(), 1)
		}
		side.Accounting.account(s, []int{fl.ch}, pub2)
		lat.merge(fl.lat)
		side.Requests += fl.reqs
		side.Errors += fl.errs
		side.EmptyAnswers += fl.empty
		side.Transports[fl.transpt]++
	}
	side.Requests -= reqs0
	side.RequestsPerSec = float64(side.Requests) / elapsed.Seconds()
	side.BytesUp, side.BytesDown = upN, downN
	if side.Accounting.Received > 0 {
		side.BytesPerEvent = float64(upN+downN) / float64(side.Accounting.Received)
		side.CPUMicrosPerEv = side.CPU.ServerCPU * 1e6 / float64(side.Accounting.Received)
	}
	side.DeliveredPerSec = float64(side.Accounting.Received) / elapsed.Seconds()
	side.Latency = lat.summary()
	side.Published = pub.acked.Load()
	_ = paced
	return side, nil
}

func cmdPoll(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("poll", flag.ContinueOnError)
	var c common
	c.register(fs, common{clients: 200, channels: 10, perClient: 10, rate: 100, payload: 200,
		duration: 20 * time.Second, warmup: 2 * time.Second, label: "poll-vs-stream"})
	if err := fs.Parse(args); err != nil {
		return err
	}
	cleanup, err := c.ensureBin(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	cfg := c.loadConfig()
	cfg.ChannelsPerClient = cfg.Channels // the stream tab subscribes to every feed
	res := &pollResult{Kind: "poll", Time: time.Now().UTC().Format(time.RFC3339), Config: cfg, Load: loadavg()}

	t, err := c.target(ctx, nil)
	if err != nil {
		return err
	}
	res.Poll, err = runPoll(ctx, t, cfg, os.Stderr)
	t.close()
	if err != nil {
		return fmt.Errorf("poll: %w", err)
	}
	t, err = c.target(ctx, nil)
	if err != nil {
		return err
	}
	cfg.IdleSettle = 0
	res.Stream, err = runLoad(ctx, t, cfg, os.Stderr)
	t.close()
	if err != nil {
		return fmt.Errorf("stream: %w", err)
	}
	if d := res.Stream.Server; d.EventsDelivered > 0 {
		res.StreamBytesPerEvent = float64(d.BytesWire+d.BytesRead) / float64(d.EventsDelivered)
		res.BytesRatio = res.Poll.BytesPerEvent / res.StreamBytesPerEvent
	}
	if res.Stream.Server.CPUMicrosPerEv > 0 {
		res.CPURatio = res.Poll.CPUMicrosPerEv / res.Stream.Server.CPUMicrosPerEv
	}
	res.RequestsSaved = res.Poll.RequestsPerSec
	printPoll(os.Stdout, res)
	return writeJSON(c.jsonPath, res)
}

func printPoll(w io.Writer, r *pollResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p, s := r.Poll, r.Stream
	fmt.Fprintf(tw, "workload\t%d tabs x %d feeds, %d ev/s over the feeds, %d B payload, %.0fs\n",
		r.Config.Clients, p.Feeds, r.Config.Rate, r.Config.Payload, r.Config.DurationS)
	fmt.Fprintf(tw, "\tlong-poll\tstream\n")
	fmt.Fprintf(tw, "connections\t%d polls open\t%d sockets\n", r.Config.Clients*p.Feeds, s.Connected)
	fmt.Fprintf(tw, "requests/s\t%.0f\t0 (after connect)\n", p.RequestsPerSec)
	fmt.Fprintf(tw, "delivered\t%d of %d, lost %d\t%d of %d, lost %d\n", p.Accounting.Received, p.Accounting.Expected,
		p.Accounting.Lost, s.Accounting.Received, s.Accounting.Expected, s.Accounting.Lost)
	fmt.Fprintf(tw, "bytes/event (both ways)\t%.0f\t%.0f\n", p.BytesPerEvent, r.StreamBytesPerEvent)
	fmt.Fprintf(tw, "latency p50/p99 ms\t%.1f / %.1f\t%.1f / %.1f\n", p.Latency.P50, p.Latency.P99, s.Latency.P50, s.Latency.P99)
	fmt.Fprintf(tw, "server CPU µs/event\t%.2f\t%.2f\n", p.CPUMicrosPerEv, s.Server.CPUMicrosPerEv)
	fmt.Fprintf(tw, "errors\t%d (transports %v)\t%d publish errors\n", p.Errors, p.Transports, s.PublishErrors)
	fmt.Fprintf(tw, "load average\t%s\n", r.Load)
	tw.Flush()
}
