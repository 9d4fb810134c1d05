package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/stream"
)

func TestMain(m *testing.M) {
	// The NATS cluster helper re-executes the running binary as "nats-node": in tests
	// that binary is this one.
	// The closed mode's publishers run as this binary re-executed as "closed-publish".
	if len(os.Args) > 1 && (os.Args[1] == "nats-node" || os.Args[1] == "closed-publish") {
		child := map[string]func([]string) error{"nats-node": cmdNATSNode,
			"closed-publish": func(a []string) error { return cmdClosedPublish(context.Background(), a) }}[os.Args[1]]
		if err := child(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m, testutil.LeakOptions()...)
}

// The fault run's NATS cluster: three child processes form a JetStream cluster; one is
// killed with SIGKILL and restarted on its store, and an R3 stream keeps every message
// it acknowledged.
func TestNATSClusterKillRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nats-server processes")
	}
	testutil.SkipReexec(t)                          // the nodes are this test binary re-executed
	ctx := testutil.ContextWithin(t, 5*time.Minute) // a guard, not a speed budget
	cl, err := startNATSCluster(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.close()
	nc, err := nats.Connect(cl.urls(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// One JetStream request can go unanswered while the cluster settles (a leader
	// election): every request here is bounded and sent again.
	retry(t, "create the R3 stream", func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "K", Subjects: []string{"k.>"}, Replicas: 3})
		return err
	})
	publish := func(from, n int) {
		for i := from; i < from+n; i++ {
			for {
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := js.Publish(pctx, "k.x", []byte(strconv.Itoa(i)), jetstream.WithMsgID("m-"+strconv.Itoa(i)))
				pcancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					t.Fatal(err)
				}
			}
		}
	}
	publish(0, 50)
	cl.kill(0)
	publish(50, 50) // two of three nodes: the stream goes on
	if err := cl.start(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if err := cl.waitJetStream(ctx, testutil.Patience); err != nil {
		t.Fatal(err)
	}
	var info *jetstream.StreamInfo
	retry(t, "stream info after the restart", func(ctx context.Context) error {
		s, err := js.Stream(ctx, "K")
		if err == nil {
			info, err = s.Info(ctx)
		}
		return err
	})
	if info.State.Msgs != 100 {
		t.Fatalf("stream holds %d messages, want 100", info.State.Msgs)
	}
}

// retry calls fn, each call bounded to 5 s, until it succeeds; after testutil.Patience
// it fails the test with fn's last error.
func retry(t *testing.T, what string, fn func(ctx context.Context) error) {
	t.Helper()
	var last error
	err := testutil.Eventually(context.Background(), testutil.Patience, func() bool {
		ctx := testutil.Context(t)
		last = fn(ctx)
		return last == nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, last)
	}
}

// inProcess starts the real engine on a real embedded JetStream behind a loopback HTTP
// server, and returns it as an attached target.
func inProcess(t *testing.T) *target {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	quiet := testutil.Logger(t)
	b, err := bus.NewJetStream(ctx, bus.Config{DataDir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	e, err := stream.New(stream.Config{PublisherKey: "smoke", Logger: quiet}, b)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		b.Close()
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.Handler())
	tg := attach([]string{srv.URL}, "smoke")
	t.Cleanup(func() {
		tg.http.CloseIdleConnections()
		e.Close()
		srv.Close()
		b.Close()
	})
	return tg
}

// The closed mode's publishing child publishes at its rate and reports every
// acknowledged sequence to the parent's ledger, each once, as the server numbered them.
func TestClosedPublishChild(t *testing.T) {
	testutil.SkipReexec(t) // the child is this test binary re-executed
	tg := inProcess(t)
	ctx := testutil.ContextWithin(t, 2*testutil.Patience)
	led := newLedger()
	p := &closedPublisher{http: newPublisher(tg, []string{closedChannel}, 50, 200, led), channel: closedChannel,
		rate: 50, size: 200, workers: 2, led: led, runID: "child-test"}
	paced, reqMs, cpu, err := p.runChild(ctx, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	acked := p.acked.Load()
	if acked == 0 || acked > 60 || p.errors.Load() != 0 || paced < time.Second || cpu <= 0 {
		t.Fatalf("acked %d, errors %d, paced %v, cpu %v", acked, p.errors.Load(), paced, cpu)
	}
	if reqMs.Count != acked {
		t.Fatalf("%d request latencies for %d acks", reqMs.Count, acked)
	}
	seqs := led.seqs[0]
	seen := map[uint64]bool{}
	for _, s := range seqs {
		if s == 0 || s > acked || seen[s] {
			t.Fatalf("sequence %d of %v: want each of 1..%d once", s, seqs, acked)
		}
		seen[s] = true
	}
	if uint64(len(seqs)) != acked || led.total != acked {
		t.Fatalf("ledger holds %d (total %d) for %d acks", len(seqs), led.total, acked)
	}
}

// TestSmoke runs a short stream load through the real engine and checks the tool's
// accounting: every event counted once, latencies recorded, wire figures read from
// the server, and the report written from the JSON. How many events a loaded machine
// manages to publish in the 2 s does not matter, as long as there are some; the drain
// waits (up to testutil.Patience) until every client has every one.
func TestSmoke(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "raw", true: "deflate"}[compress], func(t *testing.T) { smoke(t, compress) })
	}
}

func smoke(t *testing.T, compress bool) {
	tg := inProcess(t)
	ctx := testutil.ContextWithin(t, 3*testutil.Patience)
	cfg := loadConfig{Label: "smoke", Clients: 20, Channels: 3, ChannelsPerClient: 2, Rate: 200, Payload: 300,
		Duration: 2 * time.Second, Drain: testutil.Patience, DialConcurrency: 8, Compress: compress}
	res, err := runLoad(ctx, tg, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := res.Accounting
	if res.Connected != 20 || res.Published == 0 {
		t.Fatalf("connected %d, published %d", res.Connected, res.Published)
	}
	// 3 channels round-robin, 2 per client: each client expects 2/3 of the events.
	if a.Lost != 0 || a.Duplicates != 0 || a.Foreign != 0 || a.Received != a.Expected {
		t.Fatalf("accounting %+v", a)
	}
	if want := res.Published * 20 * 2 / 3; a.Expected < want-40 || a.Expected > want+40 {
		t.Fatalf("expected %d, want about %d", a.Expected, want)
	}
	if res.Latency.Count != a.Received || res.Latency.P99 <= 0 || res.Latency.Max < res.Latency.P99 {
		t.Fatalf("latency %+v for %d events", res.Latency, a.Received)
	}
	if res.UnexpectedClose != 0 {
		t.Fatalf("%d unexpected closes", res.UnexpectedClose)
	}
	if res.Server.EventsDelivered != a.Received || res.Server.RawBytesPerEv < 300 || res.Server.BytesWire == 0 || res.Server.EventFrames == 0 {
		t.Fatalf("server delta %+v", res.Server)
	}

	dir := t.TempDir()
	if err := writeJSON(filepath.Join(dir, "smoke.json"), res); err != nil {
		t.Fatal(err)
	}
	doc := filepath.Join(dir, "b.md")
	if err := os.WriteFile(doc, []byte("# x\n"+markBegin+"\nold\n"+markEnd+"\ntail\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmdReport([]string{"-dir", dir, "-doc", doc}); err != nil {
		t.Fatal(err)
	}
	md, _ := os.ReadFile(doc)
	if !strings.Contains(string(md), "| 20 × 200 |") || strings.Contains(string(md), "old") || !strings.HasSuffix(string(md), "tail\n") {
		t.Fatalf("report:\n%s", md)
	}
	if _, err := os.Stat(filepath.Join(dir, "latency.svg")); err != nil {
		t.Fatal(err)
	}
}
