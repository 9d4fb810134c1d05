package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"encore.app/realtime/auth"
)

// The closed mode is issue 16's method: every point on a fresh server with subscriber
// tokens (HS256), the per-user connection cap (NATS key-value) and the per-user connect
// rate on, every client a user of its own on one private channel, and four closed-loop
// HTTP publishers (each sends one event, waits for the answer, then sends the next, at
// most at its share of the offered rate), 200-byte payloads, 10 s per point. A server
// that makes publishers wait shows as a published rate under the offered one.

// closedPoint is one point of the closed mode.
type closedPoint struct {
	Clients int `json:"clients"`
	Rate    int `json:"offeredPerSecond"`
}

// closedResult is what one point measured.
type closedResult struct {
	Point           closedPoint    `json:"point"`
	Compress        bool           `json:"clientCompression"`
	Connected       int            `json:"connected"`
	ConnectFailed   int            `json:"connectFailed"`
	ConnectSeconds  float64        `json:"connectSeconds"`
	ConnectMs       LatencySummary `json:"connectMs"`
	ConnectCPUms    float64        `json:"serverCpuMsPerConnect"`
	IdleBytesPerCon float64        `json:"idleRssBytesPerConnection"`
	IdleHeapPerCon  float64        `json:"idleHeapBytesPerConnection"`
	PublishedPerSec float64        `json:"publishedPerSecond"`
	PublishReqMs    LatencySummary `json:"publishRequestMs"`
	PublishErrors   uint64         `json:"publishErrors"`
	DeliveredPerSec float64        `json:"deliveredPerSecond"`
	Accounting      accounting     `json:"accounting"`
	Latency         LatencySummary `json:"latencyMs"`
	Server          serverDelta    `json:"server"`
	CPU             CPUShare       `json:"cpu"`
	Load            string         `json:"machineLoad"`
}

type closedRun struct {
	Kind       string  `json:"kind"`
	Time       string  `json:"time"`
	DurationS  float64 `json:"durationSeconds"`
	PayloadB   int     `json:"payloadBytes"`
	Publishers int     `json:"publishers"`
	// PublishInProcess: the publishers ran among the bench's readers, not in a child.
	PublishInProcess bool            `json:"publishInProcess,omitempty"`
	ServerArgs       []string        `json:"serverArgs,omitempty"`
	Points           []*closedResult `json:"points"`
}

func parsePoints(s string) ([]closedPoint, error) {
	var out []closedPoint
	for _, p := range strings.Split(s, ",") {
		c, r, ok := strings.Cut(strings.TrimSpace(p), "x")
		ci, err1 := strconv.Atoi(c)
		ri, err2 := strconv.Atoi(r)
		if !ok || err1 != nil || err2 != nil || ci <= 0 || ri <= 0 {
			return nil, fmt.Errorf("point %q: want <clients>x<events/s>", p)
		}
		out = append(out, closedPoint{Clients: ci, Rate: ri})
	}
	return out, nil
}

func cmdClosed(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("closed", flag.ContinueOnError)
	var c common
	c.register(fs, common{payload: 200, duration: 10 * time.Second, warmup: time.Second, settle: 4 * time.Second, label: "closed"})
	points := fs.String("points", "100x1000,1000x100,1000x1000,5000x100,5000x1000,10000x100", "comma-separated <clients>x<events/s>")
	inProc := fs.Bool("publish-in-process", false, "run the publishers in the bench's own process, among its readers (default: a process of their own)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.url != "" {
		return fmt.Errorf("closed spawns its own servers (tokens, per-user cap): no -url")
	}
	pts, err := parsePoints(*points)
	if err != nil {
		return err
	}
	cleanup, err := c.ensureBin(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	run := &closedRun{Kind: "closed", Time: time.Now().UTC().Format(time.RFC3339), DurationS: c.duration.Seconds(),
		PayloadB: c.payload, Publishers: c.pubWorkers, PublishInProcess: *inProc, ServerArgs: strings.Fields(c.serverArgs)}
	for _, p := range pts {
		logf(os.Stderr, "point %d x %d", p.Clients, p.Rate)
		r, err := runClosedPoint(ctx, &c, p, *inProc, os.Stderr)
		if r != nil {
			run.Points = append(run.Points, r)
			printClosed(os.Stdout, []*closedResult{r})
		}
		if err != nil {
			return err
		}
	}
	return writeJSON(c.jsonPath, run)
}

func randomKey() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// closedChannel is the point's channel: private, so every client needs its token.
const closedChannel = "bench.closed"

func runClosedPoint(ctx context.Context, c *common, p closedPoint, inProc bool, logw io.Writer) (*closedResult, error) {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	keySpec := "k1:" + hex.EncodeToString(secret)
	keys, err := auth.ParseKeys(keySpec)
	if err != nil {
		return nil, err
	}
	// The spawn's defaults lift the connect limits (benchServerArgs); put the per-user
	// rate back (every client is a user of its own) and keep the per-IP one off: every
	// client comes from 127.0.0.1.
	// With token keys the server leaves dev mode: every key must be set.
	c.key = randomKey()
	t, err := c.target(ctx, []string{"-token-keys", keySpec, "-publisher-key", c.key, "-admin-key", randomKey(),
		"-connect-rate", "1", "-connect-burst", "10", "-ip-connect-rate", "0"})
	if err != nil {
		return nil, err
	}
	defer t.close()
	res := &closedResult{Point: p, Compress: c.compress, Load: loadavg()}
	chans := []string{closedChannel}
	span := uint64(float64(p.Rate)*(c.duration.Seconds()+5)) + 1024
	f := newFleet(t, chans, c.compress, span)
	tokens := make([]string, p.Clients)
	for i := range tokens {
		if tokens[i], err = keys.Mint("user-"+strconv.Itoa(i), time.Hour, chans); err != nil {
			return nil, err
		}
	}
	f.query = func(i int) string { return "&token=" + url.QueryEscape(tokens[i]) }

	t.gc(ctx)
	time.Sleep(c.settle / 2)
	t.gc(ctx)
	rss0, heap0 := t.proc().RSS, t.heap(ctx).HeapInuse
	cpu0 := t.proc().CPU
	took, err := f.dialAll(ctx, p.Clients, c.dialConc, func(int) []int { return []int{0} })
	cpu1 := t.proc().CPU
	defer f.closeAll()
	res.Connected, res.ConnectFailed = len(f.clients), f.failed
	res.ConnectSeconds, res.ConnectMs = took.Seconds(), f.connect.summary()
	if res.Connected > 0 {
		res.ConnectCPUms = float64(cpu1-cpu0) / float64(time.Millisecond) / float64(res.Connected)
	}
	if err != nil {
		logf(logw, "%d connects failed, first: %v", f.failed, err)
		if res.Connected == 0 || ctx.Err() != nil {
			return res, err
		}
	}
	time.Sleep(c.settle / 2)
	t.gc(ctx)
	time.Sleep(time.Second)
	t.gc(ctx)
	if res.Connected > 0 {
		res.IdleBytesPerCon = float64(t.proc().RSS-rss0) / float64(res.Connected)
		res.IdleHeapPerCon = (float64(t.heap(ctx).HeapInuse) - float64(heap0)) / float64(res.Connected)
	}

	if c.hold > 0 {
		logf(logw, "holding %d idle connections for %s", res.Connected, c.hold)
		select {
		case <-time.After(c.hold):
		case <-ctx.Done():
		}
	}
	m0, err := t.metrics(ctx)
	if err != nil {
		return res, err
	}
	f.base.Store(m0.HeadSeq + 1)
	f.warmUp.Store(time.Now().Add(c.warmup).UnixNano())
	led := newLedger()
	pub := &closedPublisher{http: newPublisher(t, chans, p.Rate, c.payload, led), channel: closedChannel, rate: p.Rate,
		size: c.payload, workers: c.pubWorkers, led: led, runID: strconv.FormatInt(time.Now().UnixNano(), 36)}
	cpu := startCPU(t.pid())
	pctx, pcancel := context.WithTimeout(ctx, c.duration+30*time.Second)
	var paced, childCPU time.Duration
	if inProc {
		paced = pub.run(pctx, c.duration)
		res.PublishReqMs = pub.http.reqLat.summary()
	} else {
		paced, res.PublishReqMs, childCPU, err = pub.runChild(pctx, c.duration)
	}
	pcancel()
	if err != nil {
		return res, err
	}
	expected := expectedTotal(f, led)
	drainStart := time.Now()
	for time.Since(drainStart) < c.drain && f.received() < expected && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	elapsed := paced + time.Since(drainStart)
	res.CPU = cpu.stopWith(childCPU)
	m1, err := t.metrics(ctx)
	if err != nil {
		return res, err
	}
	res.Server = delta(m0, m1)
	if res.Server.EventsDelivered > 0 && res.CPU.ServerCPU > 0 {
		res.Server.CPUMicrosPerEv = res.CPU.ServerCPU * 1e6 / float64(res.Server.EventsDelivered)
	}
	f.closeAll()
	var lat *latencies
	res.Accounting, lat, _ = f.tally(led)
	res.Latency = lat.summary()
	res.PublishedPerSec = float64(pub.acked.Load()) / paced.Seconds()
	res.PublishErrors = pub.errors.Load()
	res.DeliveredPerSec = float64(res.Accounting.Received) / elapsed.Seconds()
	return res, nil
}

// closedPublisher is the closed-loop publishing of issue 16's method: each worker sends
// one event per request and the next only after the answer, at most at its share of
// the rate (it never catches up with a burst).
type closedPublisher struct {
	http    *publisher // its post and request latencies
	channel string
	rate    int
	size    int
	workers int
	led     *ledger
	runID   string

	next   atomic.Uint64
	acked  atomic.Uint64
	errors atomic.Uint64
}

// run publishes for d and returns how long it ran.
func (p *closedPublisher) run(ctx context.Context, d time.Duration) time.Duration {
	workers := max(p.workers, 1)
	interval := time.Duration(float64(time.Second) * float64(workers) / float64(p.rate))
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := mrand.New(mrand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			due := start.Add(interval * time.Duration(w) / time.Duration(workers))
			var body []byte
			for ctx.Err() == nil {
				now := time.Now()
				if now.After(end) {
					return
				}
				if due.After(now) {
					time.Sleep(due.Sub(now))
				}
				n := p.next.Add(1) - 1
				body = p.send(ctx, n, body, r)
				// Closed loop: the next send is one interval after this one was due, or
				// at once when the answer came later (no catching up).
				if due = due.Add(interval); time.Now().After(due) {
					due = time.Now()
				}
			}
		}()
	}
	wg.Wait()
	return min(time.Since(start), d+time.Since(end))
}

func (p *closedPublisher) send(ctx context.Context, n uint64, body []byte, r *mrand.Rand) []byte {
	body = append(body[:0], `{"id":"`...)
	body = append(body, p.runID...)
	body = append(body, '-')
	body = strconv.AppendUint(body, n, 10)
	body = append(body, `","channel":"`...)
	body = append(body, p.channel...)
	body = append(body, `","type":"order","data":`...)
	body = appendPayload(body, p.size, n, time.Now().UnixNano(), r)
	body = append(body, '}')
	acks, err := p.http.post(ctx, int(n), body)
	if err != nil {
		p.errors.Add(1)
		return body
	}
	for _, a := range acks {
		p.led.add(0, a.Seq)
	}
	p.acked.Add(uint64(len(acks)))
	return body
}

func printClosed(w io.Writer, rs []*closedResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "point\tpublished/s\tdelivered/s\tlost\tp50 ms\tp99 ms\tpublish p99 ms\tserver publish p99 ms\tconnect s\tconnect p99 ms\tserver ms/connect\tidle KB/conn\tserver µs/event\tserver cores\tbench cores\tload")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d x %d%s\t%.0f\t%.0f\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%.1f\t%.2f\t%.1f\t%.2f\t%.2f\t%.2f\t%s\n",
			r.Point.Clients, r.Point.Rate, map[bool]string{true: " deflate"}[r.Compress], r.PublishedPerSec, r.DeliveredPerSec,
			r.Accounting.Lost, r.Latency.P50, r.Latency.P99, r.PublishReqMs.P99, r.Server.PublishMs.P99, r.ConnectSeconds, r.ConnectMs.P99,
			r.ConnectCPUms, r.IdleBytesPerCon/1024, r.Server.CPUMicrosPerEv, r.CPU.ServerCores, r.CPU.BenchCores, r.Load)
	}
	tw.Flush()
}
