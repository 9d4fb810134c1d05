package main

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"encore.app/realtime/bus"
	"encore.app/realtime/stream"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// inProcess starts the real engine on a real embedded JetStream behind a loopback HTTP
// server, and returns it as an attached target.
func inProcess(t *testing.T) *target {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
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

// TestSmoke runs a short stream load through the real engine and checks the tool's
// accounting: every event counted once, latencies recorded, wire figures read from
// the server, and the report written from the JSON.
func TestSmoke(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(map[bool]string{false: "raw", true: "deflate"}[compress], func(t *testing.T) { smoke(t, compress) })
	}
}

func smoke(t *testing.T, compress bool) {
	tg := inProcess(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := loadConfig{Label: "smoke", Clients: 20, Channels: 3, ChannelsPerClient: 2, Rate: 200, Payload: 300,
		Duration: 2 * time.Second, Drain: 5 * time.Second, DialConcurrency: 8, Compress: compress}
	res, err := runLoad(ctx, tg, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := res.Accounting
	if res.Connected != 20 || res.Published < 300 {
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
