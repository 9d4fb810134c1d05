package flag

import (
	"fmt"
	"math"
	neturl "net/url"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"encore.app/internal/testutil"
)

// TestKVRolloutStableAcrossRestart sets a 30% rollout, records every user's value over
// 10,000 IDs, restarts the NATS server and the store on the same storage directory,
// and checks the flag and every user's value survived.
func TestKVRolloutStableAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	url, stop := startNATS(t, dir)
	nc, js := connect(t, url)
	s := openKV(t, js, Options{})
	change(t, s, testCtx(t), StreamingV2, Change{Rollout: ptr(30)}, "ops")

	const users = 10000
	before := make([]bool, users)
	on := 0
	ev := s.Evaluator()
	for i := range users {
		before[i] = ev.Evaluate(StreamingV2, fmt.Sprintf("user-%d", i))
		if before[i] {
			on++
		}
	}
	share := float64(on) * 100 / users
	t.Logf("30%% rollout: %.2f%% of %d users on streaming", share, users)
	if math.Abs(share-30) > 1.5 {
		t.Fatalf("share %.2f%%, want 30±1.5", share)
	}

	s.Close()
	nc.Close()
	stop()

	url2, _ := startNATS(t, dir)
	_, js2 := connect(t, url2)
	s2 := openKV(t, js2, Options{})
	f, ok := s2.Evaluator().Flag(StreamingV2)
	if !ok || f.Rollout != 30 || f.UpdatedBy != "ops" {
		t.Fatalf("after restart flag = %+v", f)
	}
	ev2 := s2.Evaluator()
	for i := range users {
		if got := ev2.Evaluate(StreamingV2, fmt.Sprintf("user-%d", i)); got != before[i] {
			t.Fatalf("user-%d: %v before restart, %v after", i, before[i], got)
		}
	}
	audit, err := s2.Audit(testCtx(t), 10)
	if err != nil || len(audit) != 1 || audit[0].Actor != "ops" {
		t.Fatalf("audit after restart = %+v, %v", audit, err)
	}
}

// TestKVChangePropagates: two stores (two instances) on one NATS; a change on one
// reaches the other's snapshot and subscribers within a bounded time, both ways.
func TestKVChangePropagates(t *testing.T) {
	url, _ := startNATS(t, t.TempDir())
	_, jsA := connect(t, url)
	_, jsB := connect(t, url)
	a := openKV(t, jsA, Options{})
	b := openKV(t, jsB, Options{})
	subB, err := b.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer subB.Close()
	subA, err := a.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	defer subA.Close()

	for _, step := range []struct {
		from, to *KVStore
		sub      *Subscription
		enabled  bool
	}{{a, b, subB, false}, {b, a, subA, true}, {a, b, subB, false}} {
		old := step.to.Evaluator()
		start := time.Now()
		change(t, step.from, testCtx(t), StreamingV2, Change{Enabled: ptr(step.enabled)}, "ops")
		waitUntil(t, step.sub, func() bool { return step.to.Evaluator().Evaluate(StreamingV2, "u1") == step.enabled })
		t.Logf("enabled=%v seen by the other instance after %v", step.enabled, time.Since(start))
		if !step.to.Evaluator().Changed(old, StreamingV2) {
			t.Fatal("Changed reports no change")
		}
	}
}

// TestKVDeleteRestoresDefault: deleting the record (nats kv del flags <name>) brings
// the built-in default back, and a later change works on top of the delete marker.
func TestKVDeleteRestoresDefault(t *testing.T) {
	url, _ := startNATS(t, t.TempDir())
	_, js := connect(t, url)
	s := openKV(t, js, Options{})
	ctx := testCtx(t)
	change(t, s, ctx, StreamingV2, Change{Enabled: ptr(false)}, "ops")
	sub, _ := s.Subscribe()
	defer sub.Close()
	if err := s.kv.Delete(ctx, StreamingV2); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, sub, func() bool { return s.Evaluator().Evaluate(StreamingV2, "u1") })
	if f, _ := s.Evaluator().Flag(StreamingV2); f.Revision != 0 {
		t.Fatalf("after delete flag = %+v, want the built-in", f)
	}
	f := change(t, s, ctx, StreamingV2, Change{Rollout: ptr(20)}, "ops")
	if !f.Enabled || f.Rollout != 20 {
		t.Fatalf("change after delete = %+v", f)
	}
}

// TestKVInvalidRecordIgnored: a record written behind the store's back that does not
// validate is ignored (counted, logged); the previous value stays in force.
func TestKVInvalidRecordIgnored(t *testing.T) {
	url, _ := startNATS(t, t.TempDir())
	_, js := connect(t, url)
	s := openKV(t, js, Options{})
	ctx := testCtx(t)
	change(t, s, ctx, StreamingV2, Change{Rollout: ptr(40)}, "ops")
	for _, bad := range []string{`not json`, `{"name":"realtime-streaming-v2","enabled":true,"rollout":500}`, `{"name":"other-name","enabled":true}`} {
		if _, err := s.kv.PutString(ctx, StreamingV2, bad); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, "3 invalid records counted", func() bool { return s.Stats().InvalidRecords == 3 })
	if f, _ := s.Evaluator().Flag(StreamingV2); f.Rollout != 40 {
		t.Fatalf("rollout = %d after invalid records, want 40", f.Rollout)
	}
	// A change replaces the corrupt record.
	f := change(t, s, ctx, StreamingV2, Change{Rollout: ptr(50)}, "ops")
	if f.Rollout != 50 || !f.Enabled {
		t.Fatalf("change over corrupt record = %+v", f)
	}
}

// waitUntil waits for cond, checking it at each notification of sub; after
// testutil.Patience it fails the test.
func waitUntil(t *testing.T, sub *Subscription, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(testutil.Patience)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-sub.C:
		case <-deadline.C:
			t.Fatalf("condition not reached in %v", testutil.Patience)
		}
	}
}

// TestKVWatchSurvivesServerRestart: the NATS server restarts under an open store (as
// an external NATS would on failover); the client reconnects and a change made after
// the restart still reaches the store's snapshot.
func TestKVWatchSurvivesServerRestart(t *testing.T) {
	dir := t.TempDir()
	url, stop := startNATS(t, dir)
	port := mustPort(t, url)
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s := openKV(t, js, Options{})
	sub, _ := s.Subscribe()
	defer sub.Close()

	stop()
	url2, _ := startNATSPort(t, dir, port)
	_, js2 := connect(t, url2)
	other := openKV(t, js2, Options{})
	change(t, other, testCtx(t), StreamingV2, Change{Enabled: ptr(false)}, "ops")
	start := time.Now()
	waitUntil(t, sub, func() bool { return !s.Evaluator().Evaluate(StreamingV2, "u1") }) // the change after the restart
	t.Logf("change seen %v after it was written (across a server restart); resyncs %d", time.Since(start), s.Stats().Resyncs)
	if s.Stats().Resyncs == 0 {
		t.Fatal("no resync counted after the reconnect")
	}
}

func mustPort(t *testing.T, url string) int {
	t.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKVRecordWrittenWithCLI: the emergency path in docs/flags.md (nats kv put of a
// complete record, then nats kv del) works.
func TestKVRecordWrittenWithCLI(t *testing.T) {
	url, _ := startNATS(t, t.TempDir())
	_, js := connect(t, url)
	s := openKV(t, js, Options{})
	sub, _ := s.Subscribe()
	defer sub.Close()
	ctx := testCtx(t)
	const doc = `{"name":"realtime-streaming-v2","enabled":false,"rollout":100,"updatedBy":"nats-cli"}`
	if _, err := s.kv.PutString(ctx, StreamingV2, doc); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, sub, func() bool { return !s.Evaluator().Evaluate(StreamingV2, "u1") })
	if err := s.kv.Delete(ctx, StreamingV2); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, sub, func() bool { return s.Evaluator().Evaluate(StreamingV2, "u1") })
}
