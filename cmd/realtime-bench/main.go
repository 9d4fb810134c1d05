// Command realtime-bench is the load generator and benchmark of the realtime stream.
//
//	realtime-bench load -clients 1000 -rate 1000 -duration 30s      # spawns cmd/realtimed
//	realtime-bench load -url http://127.0.0.1:4000 -key dev ...     # an already running server
//	realtime-bench load -instances 3 -bus postgres -clients 1000 -rate 1000   # three realtimed on one Postgres
//	realtime-bench load -instances 3 -bus nats -nats-nodes 3 ...    # ... on a 3-node NATS cluster (R3)
//	realtime-bench idle -clients 5000                               # memory per idle connection
//	realtime-bench bandwidth -payload 200                           # batching/compression off, batching, both
//	realtime-bench poll -clients 200                                # long-poll baseline vs stream
//	realtime-bench soak -duration 10m                               # churn, memory curve, plateau check
//	realtime-bench slow -stalled 2000                               # never-reading sockets beside healthy readers
//	realtime-bench closed -points 100x1000,5000x100                 # issue 16's method: tokens, cap, closed-loop publishers
//	realtime-bench fault                                            # SIGKILL + restart mid-stream
//	realtime-bench fault -nats-nodes 3                              # SIGKILL a node of a 3-node NATS cluster
//	realtime-bench report -dir docs/bench -doc docs/benchmarks.md   # tables and SVG charts
//	realtime-bench presence | presence-memory | history              # presence and history (presence.go)
//
// Every mode prints a table and, with -json, writes its result as JSON. By default the
// server is built from ./cmd/realtimed and started as a child on a free loopback port
// with a temporary data directory, so the bench can read its RSS and CPU from /proc and
// its Go heap from /debug/vars.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "realtime-bench:", err)
		os.Exit(1)
	}
}

// common are the flags every mode shares.
type common struct {
	url, key, serverBin, serverArgs, jsonPath, label string
	clients, channels, perClient, rate, payload      int
	dialConc, pubWorkers                             int
	duration, warmup, drain, settle, hold            time.Duration
	compress                                         bool
}

func (c *common) register(fs *flag.FlagSet, d common) {
	fs.StringVar(&c.url, "url", d.url, "comma-separated base URLs of running servers (empty: spawn cmd/realtimed)")
	fs.StringVar(&c.key, "key", "dev", "publisher key (a spawned server runs in dev mode: dev)")
	fs.StringVar(&c.serverBin, "server-bin", "", "realtimed binary to spawn (empty: go build ./cmd/realtimed)")
	fs.StringVar(&c.serverArgs, "server-args", d.serverArgs, "extra flags for the spawned server, space-separated")
	fs.StringVar(&c.jsonPath, "json", "", "write the result as JSON to this file")
	fs.StringVar(&c.label, "label", d.label, "name of the scenario in reports")
	fs.IntVar(&c.clients, "clients", d.clients, "stream clients")
	fs.IntVar(&c.channels, "channels", d.channels, "channels")
	fs.IntVar(&c.perClient, "channels-per-client", d.perClient, "channels each client subscribes to")
	fs.IntVar(&c.rate, "rate", d.rate, "events published per second")
	fs.IntVar(&c.payload, "payload", d.payload, "approximate JSON payload size in bytes")
	fs.IntVar(&c.dialConc, "dial-concurrency", 64, "connects in flight")
	fs.IntVar(&c.pubWorkers, "publish-workers", 4, "concurrent publish requests")
	fs.DurationVar(&c.duration, "duration", d.duration, "publishing time")
	fs.DurationVar(&c.warmup, "warmup", d.warmup, "events sent in the first part of the run are not timed")
	fs.DurationVar(&c.drain, "drain", 10*time.Second, "how long to wait for the last events after publishing")
	fs.DurationVar(&c.settle, "settle", d.settle, "idle settle time before memory is read (0: skip the idle measurement)")
	fs.DurationVar(&c.hold, "hold", 0, "keep the connections open and idle this long before publishing (for profiling the server)")
	fs.BoolVar(&c.compress, "compress", d.compress, "clients offer permessage-deflate")
}

func (c *common) loadConfig() loadConfig {
	return loadConfig{Label: c.label, Clients: c.clients, Channels: c.channels, ChannelsPerClient: c.perClient,
		Rate: c.rate, Payload: c.payload, Duration: c.duration, Warmup: c.warmup, Drain: c.drain,
		IdleSettle: c.settle, Hold: c.hold, Compress: c.compress, DialConcurrency: c.dialConc, PublishWorkers: c.pubWorkers,
		ServerArgs: strings.Fields(c.serverArgs), DurationS: c.duration.Seconds(), WarmupS: c.warmup.Seconds()}
}

// target starts (or attaches to) the server under test with extra server flags.
func (c *common) target(ctx context.Context, extra []string) (*target, error) {
	if c.url != "" {
		return attach(strings.Split(c.url, ","), c.key), nil
	}
	args := append(strings.Fields(c.serverArgs), extra...)
	return spawnServer(ctx, spawnOptions{Bin: c.serverBin, Args: args, Key: c.key})
}

// ensureBin builds the server once so that modes spawning several servers reuse it.
func (c *common) ensureBin(ctx context.Context) (func(), error) {
	if c.url != "" || c.serverBin != "" {
		return func() {}, nil
	}
	dir, err := os.MkdirTemp("", "realtime-bench-bin-")
	if err != nil {
		return nil, err
	}
	bin, err := buildServer(ctx, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c.serverBin = bin
	return func() { os.RemoveAll(dir) }, nil
}

func writeJSON(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func usage() error {
	return fmt.Errorf("usage: realtime-bench <load|idle|bandwidth|poll|soak|slow|closed|fault|report|presence|presence-memory|history> [flags] (-h for flags)")
}

func run(args []string) error {
	if len(args) == 0 {
		return usage()
	}
	mode, args := args[0], args[1:]
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	raiseFDLimit()
	// The bench allocates little per frame; a lazier GC leaves more CPU to the server.
	debug.SetGCPercent(400)
	if i := indexFlag(args, "-cpuprofile"); i >= 0 && i+1 < len(args) {
		stopProf, err := startProfile(args[i+1])
		if err != nil {
			return err
		}
		defer stopProf()
		args = append(args[:i:i], args[i+2:]...)
	}
	switch mode {
	case "load":
		return cmdLoad(ctx, args)
	case "idle":
		return cmdIdle(ctx, args)
	case "bandwidth":
		return cmdBandwidth(ctx, args)
	case "poll":
		return cmdPoll(ctx, args)
	case "soak":
		return cmdSoak(ctx, args)
	case "slow":
		return cmdSlow(ctx, args)
	case "closed":
		return cmdClosed(ctx, args)
	case "closed-publish": // a child of closed (closedpub.go)
		return cmdClosedPublish(ctx, args)
	case "nats-node": // a child of fault -nats-nodes
		return cmdNATSNode(args)
	case "fault":
		return cmdFault(ctx, args)
	case "report":
		return cmdReport(args)
	case "presence", "presence-memory", "history": // presence.go
		return map[string]func(context.Context, []string) error{"presence": cmdPresence,
			"presence-memory": cmdPresenceMemory, "history": cmdHistory}[mode](ctx, args)
	}
	return usage()
}

func cmdLoad(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	var c common
	c.register(fs, common{clients: 100, channels: 1, perClient: 1, rate: 100, payload: 200,
		duration: 20 * time.Second, warmup: 2 * time.Second})
	var bo backendOptions
	fs.IntVar(&bo.instances, "instances", 1, "spawn this many realtimed on one shared bus (-bus); clients and publishes are spread over them")
	fs.StringVar(&bo.bus, "bus", "", "the bus the spawned instances share: nats (NATS child processes, -nats-nodes) or postgres (-postgres-url, or a Postgres the bench starts: Debian's binaries, fsync on); empty: realtimed's default (one instance, embedded NATS)")
	fs.IntVar(&bo.natsNodes, "nats-nodes", 1, "with -bus nats: NATS nodes (1: one node, stream R1; 3 or more: a cluster, stream R3)")
	fs.StringVar(&bo.postgresURL, "postgres-url", "", "with -bus postgres: use this database instead of starting one")
	fs.IntVar(&bo.postgresPort, "postgres-port", 0, "with -bus postgres: the 127.0.0.1 port of the Postgres the bench starts (0: a free one)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var t *target
	var err error
	switch {
	case bo.multi() && c.url != "":
		return fmt.Errorf("-instances and -bus spawn servers: not with -url")
	case bo.instances > 1 && bo.bus == "":
		return fmt.Errorf("-instances %d needs a shared bus: -bus nats or -bus postgres", bo.instances)
	case bo.multi():
		t, err = spawnInstances(ctx, &c, bo, nil)
	default:
		t, err = c.target(ctx, nil)
	}
	if err != nil {
		return err
	}
	defer t.close()
	cfg := c.loadConfig()
	cfg.Instances, cfg.Bus = len(t.urls), bo.bus
	if bo.bus == "nats" {
		cfg.NATSNodes = max(bo.natsNodes, 1)
	}
	if cfg.Label == "" {
		cfg.Label = fmt.Sprintf("%dx%d", cfg.Clients, cfg.Rate)
		if bo.multi() {
			cfg.Label += fmt.Sprintf(" %d instances %s", len(t.urls), bo.bus)
		}
	}
	res, err := runLoad(ctx, t, cfg, os.Stderr)
	if res != nil {
		printLoad(os.Stdout, res)
		if werr := writeJSON(c.jsonPath, res); werr != nil {
			return werr
		}
	}
	return err
}

func cmdIdle(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	var c common
	c.register(fs, common{clients: 5000, channels: 10, perClient: 1, settle: 6 * time.Second, label: "idle"})
	if err := fs.Parse(args); err != nil {
		return err
	}
	c.rate = 0
	t, err := c.target(ctx, nil)
	if err != nil {
		return err
	}
	defer t.close()
	if !t.spawned() {
		return fmt.Errorf("idle needs a spawned server (no -url) to read its memory")
	}
	res, err := runLoad(ctx, t, c.loadConfig(), os.Stderr)
	if res != nil {
		res.Kind = "idle"
		printLoad(os.Stdout, res)
		if werr := writeJSON(c.jsonPath, res); werr != nil {
			return werr
		}
	}
	return err
}

func indexFlag(args []string, name string) int {
	for i, a := range args {
		if a == name || a == "-"+name {
			return i
		}
	}
	return -1
}

// startProfile writes a CPU profile of the bench itself (-cpuprofile file, any mode).
func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// loadavg is /proc/loadavg's first three fields.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
