package cluster

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
)

// All of NATS goes down and comes back (same storage): a publish during the outage is
// answered 503 with Retry-After once the bus gives up on it; a resume that needs
// JetStream is answered "not recovered, unavailable" (never a silent gap); a connected
// client stays connected and, once NATS is back, gets the events published after it
// in order, with nothing lost from before.
func TestWholeNATSDown(t *testing.T) {
	t.Parallel() // own cluster and ports; mostly waiting (elections, timeouts)
	ctx := testutil.ContextWithin(t, testBound)
	cl := startCluster(t, 3)
	in := cl.startInstance(t, "inst-0", 0, instanceOpts{
		engine: stream.Config{WindowEvents: 2, ReplayTimeout: 2 * time.Second},
	})
	info := busInfo(t, in)
	start := protocol.Cursor{Epoch: info.Epoch, Seq: info.LastSeq}
	live := startRecorder(ctx, "live", []string{in.ws}, []string{"a"}, start)
	defer live.cl.Close()
	testutil.WaitFor(t, "subscribed", func() bool { return len(live.recoveries()) > 0 })
	p := newPublisher(t, in)
	if err := p.publish(ctx, batch("before", "a", 0, 10)); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, testutil.Patience, p, []*recorder{live})

	cl.stopAll()
	t0 := time.Now()
	body, _ := json.Marshal(map[string]any{"events": batch("during", "a", 0, 1)})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, in.srv.URL+"/v2/realtime/publish", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+publisherKey)
	resp, err := (&http.Client{Timeout: testutil.Patience}).Do(req)
	if err != nil {
		t.Fatalf("publish with NATS down: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("publish with NATS down: status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	t.Logf("publish with NATS down answered 503 after %v", time.Since(t0).Round(time.Millisecond))

	rec := recoverOnce(t, ctx, in, []string{"a"}, start) // needs JetStream: the window holds 2
	if rec.Recovered || rec.Reason != protocol.ReasonUnavailable {
		t.Fatalf("resume with NATS down: %+v, want not recovered, unavailable", rec)
	}

	cl.restartAll()
	if err := p.publish(ctx, batch("after", "a", 0, 10)); err != nil {
		t.Fatal(err)
	}
	// p.expected holds the 10 before and the 10 after (the "during" one was never acked).
	waitComplete(t, testutil.Patience, p, []*recorder{live})
	if st := live.cl.Stats(); st.Reconnects != 0 {
		t.Errorf("the live client reconnected %d times; it should have stayed connected", st.Reconnects)
	}
	t.Logf("NATS down for %v; the connected client got the events published after it came back", time.Since(t0).Round(time.Millisecond))
}
