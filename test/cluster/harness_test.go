package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"encore.app/internal/testutil"
	"encore.app/monitoring/health"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
	"encore.app/realtime/stream"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.LeakOptions()...)
}

const publisherKey = "cluster-test-key"

// testBound bounds one test's clients and publishers: a guard against a hung test on a
// slow machine, never a speed budget.
const testBound = 10 * time.Minute

// quiet is the logger of the in-process clients (hundreds of them): discarded. Instances
// and buses log to the test (testutil.Logger: shown when it fails, or TESTUTIL_LOG=1).
func quiet() *slog.Logger { return testutil.Discard() }

// natsNode is one nats-server of the cluster; its ports and store survive a restart.
type natsNode struct {
	name                    string
	clientPort, clusterPort int
	dir                     string
	srv                     *server.Server // nil while stopped
}

func (n *natsNode) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.clientPort) }

// natsCluster is a JetStream cluster of in-process nats-servers on 127.0.0.1 with
// distinct store directories and full-mesh routes.
type natsCluster struct {
	t     testing.TB
	nodes []*natsNode
}

func startCluster(t testing.TB, size int) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t}
	base := t.TempDir()
	for i := range size {
		c.nodes = append(c.nodes, &natsNode{
			name: fmt.Sprintf("n%d", i), clientPort: testutil.FreePort(t), clusterPort: testutil.FreePort(t),
			dir: filepath.Join(base, fmt.Sprintf("n%d", i)),
		})
	}
	for i := range c.nodes {
		c.startNode(i)
	}
	t.Cleanup(c.stopAll)
	c.waitReady()
	return c
}

func (c *natsCluster) startNode(i int) {
	c.t.Helper()
	n := c.nodes[i]
	var routes []string
	for j, o := range c.nodes {
		if j != i {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.clusterPort))
		}
	}
	opts := &server.Options{
		ServerName: n.name, Host: "127.0.0.1", Port: n.clientPort,
		JetStream: true, StoreDir: n.dir, NoSigs: true, NoLog: true,
		Cluster: server.ClusterOpts{Name: "rt-test", Host: "127.0.0.1", Port: n.clusterPort},
		Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
	}
	s, err := server.NewServer(opts)
	if err != nil {
		c.t.Fatalf("node %s: %v", n.name, err)
	}
	go s.Start()
	if !s.ReadyForConnections(testutil.Patience) {
		c.t.Fatalf("node %s not ready", n.name)
	}
	n.srv = s
}

// stopNode shuts node i down at once (its clients see the connection drop).
func (c *natsCluster) stopNode(i int) {
	if s := c.nodes[i].srv; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.nodes[i].srv = nil
	}
}

func (c *natsCluster) stopAll() {
	for i := range c.nodes {
		c.stopNode(i)
	}
}

// restartAll starts every stopped node again on its storage and ports.
func (c *natsCluster) restartAll() {
	for i, n := range c.nodes {
		if n.srv == nil {
			c.startNode(i)
		}
	}
	c.waitReady()
}

// urls lists the client URLs starting with node first (the node a bus connects to
// first; nats.DontRandomize keeps the order).
func (c *natsCluster) urls(first int) string {
	var u []string
	for k := range c.nodes {
		u = append(u, c.nodes[(first+k)%len(c.nodes)].url())
	}
	return strings.Join(u, ",")
}

// attempt bounds one JetStream API request of the harness: a request sent while the
// cluster is in flux (an election) may get no answer at all, so it is sent again rather
// than waited for until the test's deadline.
const attempt = 2 * time.Second

// settleBound bounds the harness's waits for the cluster to settle (JetStream meta
// leader, stream leader): elections need their timers to fire on time, and on a 2-core
// machine at load 20 under -race they take minutes. Returned as soon as it settles.
var settleBound = 3 * testutil.Patience

// retry calls fn, each call bounded by attempt, until it succeeds; after settleBound it
// fails the test with fn's last error.
func retry(t testing.TB, what string, fn func(ctx context.Context) error) {
	t.Helper()
	var last error
	err := testutil.Eventually(context.Background(), settleBound, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), attempt)
		defer cancel()
		last = fn(ctx)
		return last == nil
	})
	if err != nil {
		t.Fatalf("%s: %v (after %v)", what, last, settleBound)
	}
}

// waitReady waits until JetStream answers through every running node (meta leader
// elected).
func (c *natsCluster) waitReady() {
	c.t.Helper()
	for i, n := range c.nodes {
		if n.srv == nil {
			continue
		}
		retry(c.t, fmt.Sprintf("node %d: jetstream ready", i), func(ctx context.Context) error {
			nc, err := nats.Connect(n.url())
			if err != nil {
				return err
			}
			defer nc.Close()
			js, _ := jetstream.New(nc)
			_, err = js.AccountInfo(ctx)
			return err
		})
	}
}

// waitStream waits until the stream answers info requests (has a leader) and says
// how long that took.
func (c *natsCluster) waitStream(name string) time.Duration {
	c.t.Helper()
	_, js := c.connect(0)
	t0 := time.Now()
	retry(c.t, "stream "+name, func(ctx context.Context) error {
		_, err := js.Stream(ctx, name)
		return err
	})
	return time.Since(t0)
}

// connect opens a NATS connection (for assertions through the JetStream API).
func (c *natsCluster) connect(first int) (*nats.Conn, jetstream.JetStream) {
	c.t.Helper()
	nc, err := nats.Connect(c.urls(first), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		c.t.Fatal(err)
	}
	return nc, js
}

// instance is one realtime server: bus (connected to the cluster, node `first`
// first), engine, HTTP server and, optionally, its fleet health publisher.
type instance struct {
	name  string
	bus   bus.Bus
	eng   *stream.Engine
	srv   *httptest.Server
	ws    string // stream URL
	fleet *health.Fleet
	fnc   *nats.Conn // the fleet's own connection (closed first to simulate a crash)
	once  sync.Once
	pres  *presenceOf // presence tracker, when instanceOpts.presence is set (presence_test.go)
}

type instanceOpts struct {
	engine stream.Config
	bus    bus.Config
	// fleetTTL > 0 publishes this instance's health snapshot to the health bucket.
	fleetTTL time.Duration
	// presence, when set, gives the engine a presence tracker (presence_test.go).
	presence *presenceOpts
	// wrap, when set, wraps the bus the engine uses (the instance keeps the JetStream).
	wrap func(bus.Bus) bus.Bus
}

func (c *natsCluster) startInstance(t testing.TB, name string, first int, o instanceOpts) *instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settleBound)
	defer cancel()
	log := testutil.Logger(t).With("test_instance", name)
	bc := o.bus
	bc.URL = c.urls(first)
	if bc.Replicas == 0 {
		bc.Replicas = 3
	}
	bc.Logger = log
	bc.NATSOptions = append(bc.NATSOptions, nats.DontRandomize(), nats.ReconnectWait(100*time.Millisecond))
	b, err := bus.NewJetStream(ctx, bc)
	if err != nil {
		t.Fatalf("%s: bus: %v", name, err)
	}
	ec := o.engine
	ec.Instance = name
	ec.PublisherKey = publisherKey
	ec.Logger = log
	if ec.RetryMax == 0 {
		ec.RetryMin, ec.RetryMax = 20*time.Millisecond, 200*time.Millisecond
	}
	// The engine's Start reads the stream's position in one request, which gets no
	// answer while the cluster is in flux (a stream just recreated by another instance,
	// a leader election): wait until the stream answers first.
	retry(t, name+": stream answers", func(ctx context.Context) error {
		_, err := b.Info(ctx)
		return err
	})
	var eb bus.Bus = b
	if o.wrap != nil {
		eb = o.wrap(b)
	}
	pres := c.startPresence(t, name, first, o.presence, &ec)
	in := serveInstance(ctx, t, name, ec, b, eb)
	in.pres = pres
	e := in.eng
	if o.fleetTTL > 0 {
		nc, err := nats.Connect(c.urls(first), nats.DontRandomize())
		if err != nil {
			in.kill()
			t.Fatal(err)
		}
		in.fnc = nc
		in.fleet, err = health.StartFleet(ctx, nc, health.FleetConfig{
			Bucket:   health.BucketConfig{TTL: o.fleetTTL},
			Snapshot: func() health.InstanceSnapshot { return snapshotOf(e) },
		})
		if err != nil {
			in.kill()
			t.Fatalf("%s: fleet: %v", name, err)
		}
	}
	t.Cleanup(in.kill)
	return in
}

// serveInstance starts an engine (config ec) on eb and serves it over HTTP: the
// instance owns b, which is eb or the bus eb wraps, and closes it if that fails.
func serveInstance(ctx context.Context, t testing.TB, name string, ec stream.Config, b, eb bus.Bus) *instance {
	t.Helper()
	e, err := stream.New(ec, eb)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		b.Close()
		t.Fatalf("%s: start: %v", name, err)
	}
	in := &instance{name: name, bus: b, eng: e, srv: httptest.NewServer(e.Handler())}
	in.ws = "ws" + strings.TrimPrefix(in.srv.URL, "http") + "/v2/realtime/stream"
	return in
}

// snapshotOf is the engine's figures as the fleet record (the same type).
func snapshotOf(e *stream.Engine) health.InstanceSnapshot { return e.Snapshot() }

// kill stops the instance abruptly, as a crashed process would: the health record is
// not withdrawn (its connection is cut first), listeners and connections are closed
// without a drain, the bus connection is dropped.
func (in *instance) kill() {
	in.once.Do(func() {
		in.pres.kill() // no heartbeat or write after this: its members must lapse
		if in.fnc != nil {
			in.fnc.Close()
		}
		if in.fleet != nil {
			in.fleet.Close() // its withdraw fails: the connection is gone
		}
		in.srv.Listener.Close()
		in.eng.Close()
		in.srv.Close()
		in.bus.Close()
	})
}

// publisher posts events over HTTP to the instances, round robin, moving on when an
// instance is gone and retrying a batch (same IDs, so the bus dedupes) on 503.
type publisher struct {
	t     testing.TB
	hc    *http.Client
	mu    sync.Mutex
	alive []*instance
	next  int
	acked map[string]bus.Ack // id -> ack
	order []protocol.Event   // acked events with Seq, in publish order
	// retries counts resends (instance gone or 503).
	retries int
	// key is the publisher key sent ("" = publisherKey, the in-process servers').
	key string
}

func newPublisher(t testing.TB, ins ...*instance) *publisher {
	return &publisher{t: t, hc: &http.Client{Timeout: 15 * time.Second}, alive: slices.Clone(ins), acked: map[string]bus.Ack{}}
}

// remove stops publishing through in.
func (p *publisher) remove(in *instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.alive = slices.DeleteFunc(p.alive, func(x *instance) bool { return x == in })
}

// publish sends evs through the next instance until acked (bounded by ctx) and
// records the acks.
func (p *publisher) publish(ctx context.Context, evs []protocol.Event) error {
	body, _ := json.Marshal(map[string]any{"events": evs})
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("publish %s..: %w", evs[0].ID, err)
		}
		p.mu.Lock()
		if len(p.alive) == 0 {
			p.mu.Unlock()
			return errors.New("no instance left")
		}
		in := p.alive[p.next%len(p.alive)]
		p.next++
		p.mu.Unlock()
		acks, status, err := p.post(ctx, in, body)
		if err != nil || status != http.StatusOK {
			p.mu.Lock()
			p.retries++
			p.mu.Unlock()
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if len(acks) != len(evs) {
			return fmt.Errorf("%d acks for %d events", len(acks), len(evs))
		}
		p.mu.Lock()
		for i, a := range acks {
			if a.ID != evs[i].ID || a.Seq == 0 {
				p.mu.Unlock()
				return fmt.Errorf("bad ack %+v for %s", a, evs[i].ID)
			}
			if _, seen := p.acked[a.ID]; !seen {
				ev := evs[i]
				ev.Seq = a.Seq
				p.order = append(p.order, ev)
			}
			p.acked[a.ID] = a
		}
		p.mu.Unlock()
		return nil
	}
}

func (p *publisher) post(ctx context.Context, in *instance, body []byte) ([]bus.Ack, int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, in.srv.URL+"/v2/realtime/publish", bytes.NewReader(body))
	key := p.key
	if key == "" {
		key = publisherKey
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := p.hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var pr stream.PublishResponse
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil {
			return nil, 0, err
		}
	}
	return pr.Acks, resp.StatusCode, nil
}

// lastSeq is the highest acked sequence.
func (p *publisher) lastSeq() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var last uint64
	for _, ev := range p.order {
		last = max(last, ev.Seq)
	}
	return last
}

// expected returns the acked events of channel in sequence order.
func (p *publisher) expected(channel string) []protocol.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []protocol.Event
	for _, ev := range p.order {
		if ev.Channel == channel {
			out = append(out, ev)
		}
	}
	slices.SortFunc(out, func(a, b protocol.Event) int { return int(a.Seq) - int(b.Seq) })
	return out
}

// recorder is one rtclient.Client and what its application saw.
type recorder struct {
	name     string
	channels []string
	cl       *rtclient.Client
	mu       sync.Mutex
	got      []protocol.Event
	when     []time.Time // receipt time of got[i]
	recs     []protocol.Recovery
}

// waitSubscribed waits until every recorder has had its first subscription answer.
func waitSubscribed(t testing.TB, rs []*recorder) {
	t.Helper()
	testutil.WaitFor(t, "every client subscribed", func() bool {
		for _, r := range rs {
			if len(r.recoveries()) == 0 {
				return false
			}
		}
		return true
	})
}

// closeRecorders closes every recorder's client.
func closeRecorders(rs []*recorder) {
	for _, r := range rs {
		r.cl.Close()
	}
}

func startRecorder(ctx context.Context, name string, urls []string, channels []string, cur protocol.Cursor) *recorder {
	return startGatedRecorder(ctx, name, urls, channels, cur, nil)
}

// startGatedRecorder is startRecorder whose connections are opened through hc (nil: the
// default client).
func startGatedRecorder(ctx context.Context, name string, urls []string, channels []string, cur protocol.Cursor, hc *http.Client) *recorder {
	r := &recorder{name: name, channels: channels}
	r.cl = rtclient.Start(ctx, rtclient.Config{
		URLs: urls, Channels: channels, Cursor: cur, HTTPClient: hc,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		Logger: quiet(),
		OnEvent: func(ev protocol.Event) {
			r.mu.Lock()
			r.got = append(r.got, ev)
			r.when = append(r.when, time.Now())
			r.mu.Unlock()
		},
		OnRecovery: func(rec protocol.Recovery) {
			r.mu.Lock()
			r.recs = append(r.recs, rec)
			r.mu.Unlock()
		},
	})
	return r
}

func (r *recorder) events() []protocol.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func (r *recorder) recoveries() []protocol.Recovery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.recs)
}

// check compares what r's application got with the acked events of its channels:
// every one exactly once, in sequence order, nothing else.
func (r *recorder) check(p *publisher) error {
	got := r.events()
	var last uint64
	seen := map[string]bool{}
	per := map[string][]string{}
	for _, ev := range got {
		if ev.Seq <= last {
			return fmt.Errorf("%s: seq %d (%s) after %d: out of order or repeated", r.name, ev.Seq, ev.ID, last)
		}
		last = ev.Seq
		if seen[ev.ID] {
			return fmt.Errorf("%s: %s twice", r.name, ev.ID)
		}
		seen[ev.ID] = true
		per[ev.Channel] = append(per[ev.Channel], ev.ID)
	}
	total := 0
	for _, ch := range r.channels {
		want := p.expected(ch)
		total += len(want)
		gotIDs := per[ch]
		if len(gotIDs) != len(want) {
			missing := 0
			for _, ev := range want {
				if !seen[ev.ID] {
					missing++
				}
			}
			return fmt.Errorf("%s: channel %s: got %d events, want %d (%d missing)", r.name, ch, len(gotIDs), len(want), missing)
		}
		for i, ev := range want {
			if gotIDs[i] != ev.ID {
				return fmt.Errorf("%s: channel %s: event %d is %s, want %s", r.name, ch, i, gotIDs[i], ev.ID)
			}
		}
	}
	if len(got) != total {
		return fmt.Errorf("%s: got %d events, %d belong to its channels", r.name, len(got), total)
	}
	return nil
}

// waitComplete waits until every recorder passes check, then fails with the first
// error if they do not within d (a bound against a hung test: testutil.Patience, or
// more for hundreds of clients resuming through JetStream).
func waitComplete(t testing.TB, d time.Duration, p *publisher, rs []*recorder) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		var firstErr error
		for _, r := range rs {
			if err := r.check(p); err != nil {
				firstErr = err
				break
			}
		}
		if firstErr == nil {
			return
		}
		if time.Now().After(deadline) {
			bad := 0
			for _, r := range rs {
				if err := r.check(p); err != nil {
					if bad < 3 {
						t.Logf("%v; stats %+v, on %q, recoveries %+v", err, r.cl.Stats(), r.cl.Instance(), r.recoveries())
					}
					bad++
				}
			}
			t.Fatalf("after %v: %d of %d clients incomplete: %v", d, bad, len(rs), firstErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// batch builds n events on channel with ids "<prefix>-<channel>-<i>".
func batch(prefix, channel string, from, n int) []protocol.Event {
	evs := make([]protocol.Event, 0, n)
	for i := from; i < from+n; i++ {
		evs = append(evs, protocol.Event{ID: fmt.Sprintf("%s-%s-%d", prefix, channel, i), Channel: channel,
			Type: "t", Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))})
	}
	return evs
}

// rotate returns the instances' stream URLs starting at index first.
func rotate(ins []*instance, first int) []string {
	var u []string
	for k := range ins {
		u = append(u, ins[(first+k)%len(ins)].ws)
	}
	return u
}

// busInfo reads the stream's position through in's bus.
func busInfo(t testing.TB, in *instance) bus.Info {
	t.Helper()
	var info bus.Info
	retry(t, in.name+": bus info", func(ctx context.Context) (err error) {
		info, err = in.bus.Info(ctx)
		return err
	})
	return info
}

// dialGate holds new connections while closed, so a test decides when clients may
// reconnect instead of racing them.
type dialGate struct {
	mu   sync.Mutex
	open chan struct{}
}

func newDialGate() *dialGate {
	g := &dialGate{open: make(chan struct{})}
	close(g.open)
	return g
}

// hold makes dials wait until release.
func (g *dialGate) hold() {
	g.mu.Lock()
	g.open = make(chan struct{})
	g.mu.Unlock()
}

func (g *dialGate) release() {
	g.mu.Lock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
	g.mu.Unlock()
}

// client is an HTTP client whose dials pass the gate; no idle connections are kept.
func (g *dialGate) client() *http.Client {
	d := &net.Dialer{}
	return &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			g.mu.Lock()
			open := g.open
			g.mu.Unlock()
			select {
			case <-open:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return d.DialContext(ctx, network, addr)
		},
	}}
}
