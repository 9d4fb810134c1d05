package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// bandwidthModes are the three server configurations compared: one event per frame with
// no compression, batching only, and batching with permessage-deflate (the default).
var bandwidthModes = []struct {
	Name string
	Args []string
}{
	{"off", []string{"-batch-max", "1", "-batch-window", "1ns", "-compress-threshold", "-1"}},
	{"batching", []string{"-compress-threshold", "-1"}},
	{"batching+deflate", nil},
}

type bwRun struct {
	Mode    string      `json:"mode"`
	Payload int         `json:"payloadBytes"`
	Result  *loadResult `json:"result"`
	// VsOff is wire bytes per event with both off divided by this mode's.
	VsOff float64 `json:"wireReductionVsOff"`
}

type bandwidthResult struct {
	Kind   string     `json:"kind"`
	Time   string     `json:"time"`
	Config loadConfig `json:"config"`
	Runs   []bwRun    `json:"runs"`
	Load   string     `json:"machineLoad"`
}

func cmdBandwidth(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bandwidth", flag.ContinueOnError)
	var c common
	c.register(fs, common{clients: 100, channels: 1, perClient: 1, rate: 1000, payload: 200,
		duration: 15 * time.Second, warmup: 2 * time.Second, compress: true, label: "bandwidth"})
	payloads := fs.String("payloads", "200,2000", "payload sizes to compare, comma-separated")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if c.url != "" {
		return fmt.Errorf("bandwidth restarts the server with different flags: do not pass -url")
	}
	cleanup, err := c.ensureBin(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	cfg := c.loadConfig()
	res := &bandwidthResult{Kind: "bandwidth", Time: time.Now().UTC().Format(time.RFC3339), Config: cfg, Load: loadavg()}
	for _, ps := range strings.Split(*payloads, ",") {
		size, err := strconv.Atoi(strings.TrimSpace(ps))
		if err != nil {
			return fmt.Errorf("-payloads: %w", err)
		}
		var off float64
		for _, m := range bandwidthModes {
			t, err := c.target(ctx, m.Args)
			if err != nil {
				return err
			}
			rc := cfg
			rc.Payload = size
			rc.Label = m.Name
			rc.ServerArgs = append(strings.Fields(c.serverArgs), m.Args...)
			logf(os.Stderr, "bandwidth: mode %s, payload %d B", m.Name, size)
			r, err := runLoad(ctx, t, rc, os.Stderr)
			t.close()
			if err != nil {
				return fmt.Errorf("%s/%d: %w", m.Name, size, err)
			}
			run := bwRun{Mode: m.Name, Payload: size, Result: r}
			if m.Name == "off" {
				off = r.Server.WireBytesPerEv
			}
			if r.Server.WireBytesPerEv > 0 {
				run.VsOff = off / r.Server.WireBytesPerEv
			}
			res.Runs = append(res.Runs, run)
		}
	}
	printBandwidth(os.Stdout, res)
	return writeJSON(c.jsonPath, res)
}

func printBandwidth(w io.Writer, r *bandwidthResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "%d clients, %d ev/s on %d channel(s), %.0fs per run\n", r.Config.Clients, r.Config.Rate, r.Config.Channels, r.Config.DurationS)
	fmt.Fprintln(tw, "mode\tpayload B\tevents/frame\twire B/event\traw B/event\tx fewer than off\tserver CPU µs/event\tp99 ms\tlost\t")
	for _, run := range r.Runs {
		s := run.Result.Server
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.0f\t%.0f\t%.1f\t%.2f\t%.1f\t%d\t\n", run.Mode, run.Payload, s.EventsPerFrame,
			s.WireBytesPerEv, s.RawBytesPerEv, run.VsOff, s.CPUMicrosPerEv, run.Result.Latency.P99, run.Result.Accounting.Lost)
	}
	tw.Flush()
}
