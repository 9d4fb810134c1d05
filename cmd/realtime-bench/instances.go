package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"encore.app/internal/pgtest"
)

// backendOptions choose what the spawned instances share (-instances, -bus,
// -nats-nodes, -postgres-url): the bus every instance reads.
type backendOptions struct {
	instances    int    // realtimed processes (1: the single spawned server of before)
	bus          string // "" (realtimed's default: embedded NATS), "nats" or "postgres"
	natsNodes    int    // with bus nats: NATS child processes (1: one node, R1; 3 or more: a cluster, R3)
	postgresURL  string // with bus postgres: an existing database (empty: the bench starts one)
	postgresPort int    // port of the Postgres the bench starts (0: a free one)
}

// multi reports whether the options ask for more than the one spawned server.
func (b backendOptions) multi() bool { return b.instances > 1 || b.bus != "" }

// backend is the shared bus of spawned instances, started by the bench.
type backend struct {
	kind  string
	nats  *natsCluster
	pg    *pgtest.Server
	args  []string // the realtimed flags that join it
	descr string
	// cleanup runs after the backend is stopped (the built server binary).
	cleanup []func()
}

// startBackend starts (or names) the bus the instances share.
func startBackend(ctx context.Context, o backendOptions) (*backend, error) {
	switch o.bus {
	case "nats":
		n := max(o.natsNodes, 1)
		cl, err := startNATSCluster(ctx, n)
		if err != nil {
			return nil, err
		}
		replicas := 1
		if n >= 3 {
			replicas = 3
		}
		return &backend{kind: "nats", nats: cl, args: []string{"-bus", "nats", "-nats-url", cl.urls(), "-replicas", strconv.Itoa(replicas)},
			descr: fmt.Sprintf("NATS JetStream, %d node(s) (child processes, file store), stream R%d", n, replicas)}, nil
	case "postgres":
		if o.postgresURL != "" {
			return &backend{kind: "postgres", args: []string{"-bus", "postgres", "-postgres-url", o.postgresURL},
				descr: "Postgres at -postgres-url"}, nil
		}
		// Debian's server binaries (internal/pgtest), fsync on: the durability the bus
		// is for.
		pg, err := pgtest.New(pgtest.Options{Durable: true, Port: o.postgresPort})
		if err != nil {
			return nil, fmt.Errorf("postgres: %w (%s)", err, pgtest.InstallHint)
		}
		url, err := pg.NewDB(ctx)
		if err != nil {
			pg.Close()
			return nil, err
		}
		return &backend{kind: "postgres", pg: pg, args: []string{"-bus", "postgres", "-postgres-url", url},
			descr: fmt.Sprintf("Postgres (Debian, fsync on) on 127.0.0.1:%d", pg.Port())}, nil
	case "":
		return &backend{descr: "each instance its own embedded NATS"}, nil
	}
	return nil, fmt.Errorf("-bus %q: nats or postgres", o.bus)
}

func (b *backend) close() {
	if b.nats != nil {
		b.nats.close()
	}
	if b.pg != nil {
		b.pg.Close()
	}
	for _, f := range b.cleanup {
		f()
	}
}

// pids are the backend's processes (NATS nodes; the postmaster and its children),
// for its CPU share.
func (b *backend) pids() []int {
	var out []int
	if b.nats != nil {
		for _, n := range b.nats.nodes {
			if n.cmd != nil && n.cmd.Process != nil {
				out = append(out, n.cmd.Process.Pid)
			}
		}
	}
	if b.pg != nil {
		if root := b.pg.PID(); root != 0 {
			out = append(append(out, root), childrenOf(root)...)
		}
	}
	return out
}

// childrenOf lists the processes whose parent is pid (from /proc/<n>/stat).
func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if f := strings.Fields(string(b[i+1:])); len(f) > 1 {
			if pp, _ := strconv.Atoi(f[1]); pp == pid {
				out = append(out, n)
			}
		}
	}
	return out
}

// spawnInstances starts the backend and o.instances realtimed children on it; the
// target spreads clients and publishes over them and sums their figures.
func spawnInstances(ctx context.Context, c *common, o backendOptions, extra []string) (*target, error) {
	be, err := startBackend(ctx, o)
	if err != nil {
		return nil, err
	}
	done, err := c.ensureBin(ctx) // one build for every instance
	if err != nil {
		be.close()
		return nil, err
	}
	be.cleanup = append(be.cleanup, done)
	g := &target{key: c.key, http: newHTTPClient(), backend: be, pprof: true}
	for i := range max(o.instances, 1) {
		args := append(append(strings.Fields(c.serverArgs), be.args...), extra...)
		args = append(args, "-instance", fmt.Sprintf("bench-%d", i))
		m, err := spawnServer(ctx, spawnOptions{Bin: c.serverBin, Args: args, Key: c.key})
		if err != nil {
			g.close()
			return nil, fmt.Errorf("instance %d: %w", i, err)
		}
		g.members = append(g.members, m)
		g.urls = append(g.urls, m.urls...)
	}
	logf(os.Stderr, "%d instance(s) on %s", len(g.members), be.descr)
	return g, nil
}
