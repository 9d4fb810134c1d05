package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// The closed mode's publishers run in a process of their own by default, as the
// backend services that publish do: in the bench's process they would share its
// scheduler with thousands of reader goroutines, and an answer the server sent at once
// would wait behind a burst of frames before its publisher saw it (at 5,000 x 1,000
// publishers measured 165-265 of 1,000 events/s in-process, about 500 in a process of
// their own, against the same server). -publish-in-process keeps the old way.

// closedPubResult is what the publishing child reports on its standard output.
type closedPubResult struct {
	PacedNs   int64          `json:"pacedNs"`
	Acked     uint64         `json:"acked"`
	Errors    uint64         `json:"errors"`
	RequestMs LatencySummary `json:"requestMs"`
	Seqs      []uint64       `json:"seqs"`
}

// runChild runs p's publishing in a child process (closed-publish) and adds what it
// acknowledged to p's ledger and counters. It returns how long the paced phase lasted,
// the requests' latency and the child's CPU time.
func (p *closedPublisher) runChild(ctx context.Context, d time.Duration) (time.Duration, LatencySummary, time.Duration, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, LatencySummary{}, 0, err
	}
	cmd := exec.CommandContext(ctx, self, "closed-publish", "-url", p.http.t.urls[0], "-key", p.http.t.key,
		"-channel", p.channel, "-rate", strconv.Itoa(p.rate), "-workers", strconv.Itoa(p.workers),
		"-payload", strconv.Itoa(p.size), "-duration", d.String(), "-run-id", p.runID)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return 0, LatencySummary{}, 0, fmt.Errorf("publishing child: %w", err)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	var r closedPubResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return 0, LatencySummary{}, cpu, fmt.Errorf("publishing child's report: %w", err)
	}
	for _, s := range r.Seqs {
		p.led.add(0, s)
	}
	p.acked.Add(r.Acked)
	p.errors.Add(r.Errors)
	return time.Duration(r.PacedNs), r.RequestMs, cpu, nil
}

// cmdClosedPublish is the publishing child of the closed mode (runChild).
func cmdClosedPublish(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("closed-publish", flag.ContinueOnError)
	u := fs.String("url", "", "server base URL")
	key := fs.String("key", "", "publisher key")
	channel := fs.String("channel", closedChannel, "channel")
	rate := fs.Int("rate", 100, "events per second")
	workers := fs.Int("workers", 4, "closed-loop publishers")
	size := fs.Int("payload", 200, "payload bytes")
	d := fs.Duration("duration", 10*time.Second, "publishing time")
	runID := fs.String("run-id", "", "event id prefix")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *u == "" || *runID == "" {
		return fmt.Errorf("closed-publish: -url and -run-id are required")
	}
	led := newLedger()
	t := attach([]string{*u}, *key)
	p := &closedPublisher{http: newPublisher(t, []string{*channel}, *rate, *size, led), channel: *channel,
		rate: *rate, size: *size, workers: *workers, led: led, runID: *runID}
	pctx, cancel := context.WithTimeout(ctx, *d+30*time.Second)
	defer cancel()
	paced := p.run(pctx, *d)
	r := closedPubResult{PacedNs: int64(paced), Acked: p.acked.Load(), Errors: p.errors.Load(),
		RequestMs: p.http.reqLat.summary(), Seqs: led.seqs[0]}
	return json.NewEncoder(os.Stdout).Encode(r)
}
