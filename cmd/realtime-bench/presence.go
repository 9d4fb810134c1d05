package main

// Presence and history figures (docs/benchmarks.md "Presence and history"):
//
//	realtime-bench presence -joins 300              # join/leave propagation across 3 instances
//	realtime-bench presence-memory -members 5000    # heap per member, presence on vs off
//	realtime-bench history -requests 300            # history latency, N=100, window vs stream
//
// Each spawns its own servers (cmd/realtimed) with token keys, so members are named
// users, and prints a table.

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"encore.app/realtime/auth"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

const benchTokenKeys = "bench:0123456789abcdef0123456789abcdef-presence"

func benchKeys() *auth.Keys {
	k, err := auth.ParseKeys(benchTokenKeys)
	if err != nil {
		panic(err)
	}
	return k
}

func mintFor(k *auth.Keys, user string) string {
	tok, err := k.Mint(user, time.Hour, []string{"*"})
	if err != nil {
		panic(err)
	}
	return tok
}

// dist is a sorted sample of durations.
type dist []time.Duration

func (d dist) q(p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// spawnCluster starts n servers on one NATS (the first one's embedded server), or,
// with shared (a backend's flags: startBackend), on that bus.
func spawnCluster(ctx context.Context, bin string, n int, shared []string, extra ...string) ([]*target, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	var ts []*target
	for i := range n {
		args := append([]string{"-token-keys", benchTokenKeys, "-max-conns-per-user", "0"}, extra...)
		switch {
		case shared != nil:
			args = append(args, shared...)
		case i == 0:
			args = append(args, "-nats-listen", "127.0.0.1:"+strconv.Itoa(port))
		default:
			args = append(args, "-nats-url", "nats://127.0.0.1:"+strconv.Itoa(port))
		}
		t, err := spawnServer(ctx, spawnOptions{Bin: bin, Args: args, Key: "bench", Keyed: true})
		if err != nil {
			for _, t := range ts {
				t.close()
			}
			return nil, err
		}
		ts = append(ts, t)
		if err := waitReady(ctx, t); err != nil { // the next one needs the first one's NATS
			for _, t := range ts {
				t.close()
			}
			return nil, err
		}
	}
	return ts, nil
}

// waitReady waits for a spawned server's /readyz: /healthz (what spawnServer waits
// for) answers while the server is still starting (its embedded NATS not yet
// listening, its stream refusing connections with 503).
func waitReady(ctx context.Context, t *target) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		resp, err := t.http.Get(t.urls[0] + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", t.urls[0], ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// diffLog records the presence diffs one watcher connection receives.
type diffLog struct {
	mu     sync.Mutex
	joins  map[string]time.Time
	leaves map[string]time.Time
}

func watchDiffs(ctx context.Context, url, token, channel string) (*rtclient.Conn, *diffLog, error) {
	c, err := rtclient.Dial(ctx, url, &rtclient.DialOptions{Token: token, Channels: []string{channel}, Presence: true})
	if err != nil {
		return nil, nil, err
	}
	l := &diffLog{joins: map[string]time.Time{}, leaves: map[string]time.Time{}}
	go func() {
		for {
			f, err := c.ReadFrame(ctx)
			if err != nil {
				return
			}
			if f.Type != protocol.TypePresenceDiff {
				continue
			}
			now := time.Now()
			l.mu.Lock()
			for _, u := range f.Joins {
				if _, ok := l.joins[u]; !ok {
					l.joins[u] = now
				}
			}
			for _, u := range f.Leaves {
				if _, ok := l.leaves[u]; !ok {
					l.leaves[u] = now
				}
			}
			l.mu.Unlock()
		}
	}()
	return c, l, nil
}

func cmdPresence(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("presence", flag.ContinueOnError)
	joins := fs.Int("joins", 300, "users that join (one connection each, round robin over the instances)")
	every := fs.Duration("every", 20*time.Millisecond, "time between two joins")
	grace := fs.Duration("grace", 2*time.Second, "the servers' presence grace period")
	bin := fs.String("server-bin", "", "realtimed binary (empty: go build ./cmd/realtimed)")
	var bo backendOptions
	fs.StringVar(&bo.bus, "bus", "", "the bus of the three instances: empty (the first one's embedded NATS) or postgres (-postgres-url, or a Postgres the bench starts: Debian's binaries, fsync on)")
	fs.StringVar(&bo.postgresURL, "postgres-url", "", "with -bus postgres: use this database instead of starting one")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var shared []string
	busName := "one NATS"
	switch bo.bus {
	case "":
	case "postgres":
		be, err := startBackend(ctx, bo)
		if err != nil {
			return err
		}
		defer be.close()
		shared, busName = be.args, "one Postgres"
	default:
		return fmt.Errorf("-bus %q: empty (embedded NATS) or postgres", bo.bus)
	}
	c := common{serverBin: *bin}
	cleanup, err := c.ensureBin(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	ts, err := spawnCluster(ctx, c.serverBin, 3, shared, "-presence-grace", grace.String())
	if err != nil {
		return err
	}
	defer func() {
		for _, t := range ts {
			t.close()
		}
	}()
	keys := benchKeys()
	const channel = "bench.room"
	var logs []*diffLog
	for i, t := range ts {
		conn, l, err := watchDiffs(ctx, t.streamURL(0), mintFor(keys, fmt.Sprintf("watcher-%d", i)), channel)
		if err != nil {
			return err
		}
		defer conn.CloseNow()
		logs = append(logs, l)
	}
	time.Sleep(time.Second) // the watchers' views have read the store
	type join struct {
		user string
		inst int
		at   time.Time
		conn *rtclient.Conn
	}
	var js []join
	fmt.Fprintf(os.Stderr, "presence: %d joins, one every %v, over 3 instances\n", *joins, *every)
	for i := range *joins {
		user := fmt.Sprintf("u%05d", i)
		inst := i % 3
		at := time.Now()
		conn, err := rtclient.Dial(ctx, ts[inst].streamURL(0), &rtclient.DialOptions{Token: mintFor(keys, user), Channels: []string{channel}})
		if err != nil {
			return err
		}
		defer conn.CloseNow()
		go func() {
			for {
				if _, err := conn.ReadFrame(ctx); err != nil {
					return
				}
			}
		}()
		js = append(js, join{user: user, inst: inst, at: at, conn: conn})
		time.Sleep(*every)
	}
	time.Sleep(3 * time.Second)
	var local, remote dist
	missing := 0
	for _, j := range js {
		for w, l := range logs {
			l.mu.Lock()
			got, ok := l.joins[j.user]
			l.mu.Unlock()
			switch {
			case !ok:
				missing++
			case w == j.inst:
				local = append(local, got.Sub(j.at))
			default:
				remote = append(remote, got.Sub(j.at))
			}
		}
	}
	// Leaves: close a third of the joiners; the leave is due one grace period later.
	var left []join
	for i, j := range js {
		if i%3 == 0 {
			j.at = time.Now()
			j.conn.CloseNow()
			left = append(left, j)
		}
	}
	time.Sleep(*grace + 3*time.Second)
	var leaves dist
	for _, j := range left {
		for w, l := range logs {
			l.mu.Lock()
			got, ok := l.leaves[j.user]
			l.mu.Unlock()
			if !ok {
				missing++
				continue
			}
			if w != j.inst {
				leaves = append(leaves, got.Sub(j.at)-*grace)
			}
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "presence propagation (3 instances on %s, %d joins)\tp50\tp99\tmax\tsamples\n", busName, *joins)
	fmt.Fprintf(tw, "join, watcher on the joiner's instance\t%s\t%s\t%s\t%d\n", ms(local.q(.5)), ms(local.q(.99)), ms(local.q(1)), len(local))
	fmt.Fprintf(tw, "join, watchers on the other instances\t%s\t%s\t%s\t%d\n", ms(remote.q(.5)), ms(remote.q(.99)), ms(remote.q(1)), len(remote))
	fmt.Fprintf(tw, "leave after the %v grace, other instances\t%s\t%s\t%s\t%d\n", *grace, ms(leaves.q(.5)), ms(leaves.q(.99)), ms(leaves.q(1)), len(leaves))
	fmt.Fprintf(tw, "diffs missing\t%d\t\t\t\n", missing)
	return tw.Flush()
}

func cmdPresenceMemory(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("presence-memory", flag.ContinueOnError)
	members := fs.Int("members", 5000, "connections, one user each")
	bin := fs.String("server-bin", "", "realtimed binary (empty: go build ./cmd/realtimed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := common{serverBin: *bin}
	cleanup, err := c.ensureBin(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	keys := benchKeys()
	measure := func(presence bool, channel func(i int) string, watch bool) (uint64, error) {
		t, err := spawnServer(ctx, spawnOptions{Bin: c.serverBin, Key: "bench", Keyed: true,
			Args: []string{"-token-keys", benchTokenKeys, "-max-conns-per-user", "0", "-presence=" + strconv.FormatBool(presence)}})
		if err != nil {
			return 0, err
		}
		defer t.close()
		if err := waitReady(ctx, t); err != nil {
			return 0, err
		}
		var conns []*rtclient.Conn
		defer func() {
			for _, c := range conns {
				c.CloseNow()
			}
		}()
		if watch {
			w, _, err := watchDiffs(ctx, t.streamURL(0), mintFor(keys, "watcher"), channel(0))
			if err != nil {
				return 0, err
			}
			conns = append(conns, w)
		}
		for i := range *members {
			user := fmt.Sprintf("m%06d", i)
			conn, err := rtclient.Dial(ctx, t.streamURL(0), &rtclient.DialOptions{Token: mintFor(keys, user), Channels: []string{channel(i)}})
			if err != nil {
				return 0, err
			}
			conns = append(conns, conn)
		}
		time.Sleep(3 * time.Second) // summaries written, connections idle
		var best uint64
		for range 3 {
			t.gc(ctx)
			h := t.heap(ctx)
			if best == 0 || h.HeapAlloc < best {
				best = h.HeapAlloc
			}
			time.Sleep(300 * time.Millisecond)
		}
		return best, nil
	}
	room := func(int) string { return "bench.room" }
	private := func(i int) string { return fmt.Sprintf("user:m%06d:inbox", i) }
	type row struct {
		name     string
		channel  func(int) string
		watch    bool
		off, on  uint64
		perMembr float64
	}
	rows := []row{
		{name: "one channel, followed by a watcher", channel: room, watch: true},
		{name: "one channel, nobody follows it", channel: room},
		{name: "one channel per member (private inboxes)", channel: private},
	}
	for i := range rows {
		r := &rows[i]
		fmt.Fprintf(os.Stderr, "presence-memory: %s: presence off\n", r.name)
		if r.off, err = measure(false, r.channel, r.watch); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "presence-memory: %s: presence on\n", r.name)
		if r.on, err = measure(true, r.channel, r.watch); err != nil {
			return err
		}
		r.perMembr = (float64(r.on) - float64(r.off)) / float64(*members)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "presence memory, %d members (one user each)\theap, presence off\theap, presence on\tper member\n", *members)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%.1f MiB\t%.1f MiB\t%.0f B\n", r.name, float64(r.off)/(1<<20), float64(r.on)/(1<<20), r.perMembr)
	}
	return tw.Flush()
}

func cmdHistory(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("history", flag.ContinueOnError)
	requests := fs.Int("requests", 300, "requests per case")
	events := fs.Int("events", 30000, "events published before measuring")
	limit := fs.Int("limit", 100, "events per answer (N)")
	bin := fs.String("server-bin", "", "realtimed binary (empty: go build ./cmd/realtimed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := common{serverBin: *bin}
	cleanup, err := c.ensureBin(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	t, err := spawnServer(ctx, spawnOptions{Bin: c.serverBin, Key: devPublisherKey, Args: []string{"-window", "10000", "-public-prefixes", "*"}})
	if err != nil {
		return err
	}
	defer t.close()
	if err := waitReady(ctx, t); err != nil {
		return err
	}
	// Every 10th event on "dense", every 100th on "sparse", the rest on "other".
	var dense, sparse []uint64
	fmt.Fprintf(os.Stderr, "history: publishing %d events\n", *events)
	payload := json.RawMessage(`{"order":12345,"status":"shipped","note":"` + strings.Repeat("x", 120) + `"}`)
	for start := 0; start < *events; start += 500 {
		var evs []protocol.Event
		for i := start; i < min(start+500, *events); i++ {
			ch := "other"
			switch {
			case i%100 == 0:
				ch = "sparse"
			case i%10 == 0:
				ch = "dense"
			}
			evs = append(evs, protocol.Event{ID: fmt.Sprintf("h-%d", i), Channel: ch, Type: "t", Data: payload})
		}
		body, _ := json.Marshal(map[string]any{"events": evs})
		acks, err := postPublish(ctx, t, body)
		if err != nil {
			return err
		}
		for i, a := range acks {
			switch evs[i].Channel {
			case "dense":
				dense = append(dense, a.Seq)
			case "sparse":
				sparse = append(sparse, a.Seq)
			}
		}
	}
	time.Sleep(time.Second)
	cases := []struct {
		name  string
		query string
		want  string
	}{
		{"newest 100, from the window", fmt.Sprintf("channel=dense&limit=%d", *limit), "memory"},
		{"100 before an old seq, from the stream (channel: 10% of events)", fmt.Sprintf("channel=dense&limit=%d&before=%d", *limit, dense[len(dense)/4]), "bus"},
		{"100 before an old seq, from the stream (channel: 1% of events)", fmt.Sprintf("channel=sparse&limit=%d&before=%d", *limit, sparse[len(sparse)/2]), "bus"},
		{"100 after an old seq, from the stream (channel: 10%)", fmt.Sprintf("channel=dense&limit=%d&after=%d", *limit, dense[len(dense)/4]), "bus"},
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "history, N=%d, %d events in the stream, window 10000 (GET /v2/realtime/history)\tsource\tp50\tp99\tmax\tbytes\n", *limit, *events)
	for _, cs := range cases {
		var d dist
		var source string
		var size int
		for range *requests {
			start := time.Now()
			resp, err := t.http.Get(t.urls[0] + "/v2/realtime/history?" + cs.query)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			d = append(d, time.Since(start))
			if resp.StatusCode != 200 {
				return fmt.Errorf("history %s: HTTP %d: %s", cs.query, resp.StatusCode, b)
			}
			var h protocol.History
			if err := json.Unmarshal(b, &h); err != nil {
				return err
			}
			if len(h.Events) != *limit {
				return fmt.Errorf("history %s: %d events", cs.query, len(h.Events))
			}
			source, size = h.Source, len(b)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", cs.name, source, ms(d.q(.5)), ms(d.q(.99)), ms(d.q(1)), size)
	}
	return tw.Flush()
}

func postPublish(ctx context.Context, t *target, body []byte) ([]protocol.Event, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", t.urls[0]+"/v2/realtime/publish", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+t.key)
	resp, err := t.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("publish: HTTP %d: %s", resp.StatusCode, b)
	}
	var ar struct {
		Acks []protocol.Event `json:"acks"`
	}
	return ar.Acks, json.Unmarshal(b, &ar)
}
