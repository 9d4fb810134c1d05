package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/monitoring/httpapi"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
	"encore.app/realtime/stream"
	"encore.app/server"
)

// The Postgres bus through the assembly: each instance is the whole server of package
// server (server.New from realtimed's flags, -postgres-url), run as a process of its
// own (this test binary re-executed) so that a kill is a SIGKILL, on one Postgres
// started by internal/pgtest. The bus and engine on Postgres are tested in
// realtime/bus (the contract suite) and realtime/stream (postgres_test.go); these
// tests add what only the assembly has: the flags, fleet health and connection cap
// on the same database, realtimed's settings, and processes that die.

// realtimedEnv makes this test binary run as a realtimed child (realtimedChild) before
// the tests start.
const realtimedEnv = "CLUSTER_TEST_REALTIMED"

func init() {
	if os.Getenv(realtimedEnv) == "1" {
		os.Exit(realtimedChild(os.Args[1:]))
	}
}

// realtimedChild is cmd/realtimed in short: the flags into server.Options, server.New,
// serve on -addr (port 0: a free one), whose address goes to stdout. It runs until
// killed.
func realtimedChild(args []string) int {
	o := server.Defaults()
	fs := flag.NewFlagSet("realtimed", flag.ContinueOnError)
	if err := server.RegisterFlags(fs, &o, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.Env.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	s, err := server.New(ctx, o)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "realtimed child:", err)
		return 1
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "realtimed child:", err)
		return 1
	}
	fmt.Printf("listening %s\n", ln.Addr())
	_ = http.Serve(ln, s)
	return 0
}

// realtimed is one child process and the instance the harness's publisher and
// recorders use (its srv carries only the URL: the server is in the child).
type realtimed struct {
	*instance
	base string
	cmd  *exec.Cmd
	done chan struct{}
}

// The children run in dev mode (no key flags: a server with one key needs all three,
// and then tokens), so they take the dev keys.
const assemblyAdminKey = server.DevAdminKey

// startRealtimed starts a realtimed child named name on the Postgres database url.
func startRealtimed(t *testing.T, name, url string, extra ...string) *realtimed {
	t.Helper()
	args := append([]string{"-addr", "127.0.0.1:0", "-data", t.TempDir(), "-instance", name,
		"-postgres-url", url,
		"-public-prefixes", "*", "-ip-connect-rate", "0", "-connect-rate", "0", "-batch-window", "5ms"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), realtimedEnv+"=1")
	cmd.Stderr = childLog(t, name)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &realtimed{cmd: cmd, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				addr <- a
			}
		}
		_ = cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(r.kill)
	select {
	case a := <-addr:
		r.base = "http://" + a
	case <-r.done:
		t.Fatalf("%s exited at start", name)
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s did not start", name)
	}
	r.instance = &instance{name: name, srv: &httptest.Server{URL: r.base}, ws: "ws://" + strings.TrimPrefix(r.base, "http://") + "/v2/realtime/stream"}
	return r
}

// childLog sends a child's log lines to the test's log (shown with -v or when the
// test fails), until the test's cleanup, which runs after the child's (registered
// later, run earlier).
func childLog(t *testing.T, name string) io.Writer {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			t.Logf("%s: %s", name, sc.Text())
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	t.Cleanup(func() { pw.Close(); <-done })
	return pw
}

// kill sends SIGKILL (no drain, no withdrawal of its records) and waits.
func (r *realtimed) kill() {
	if r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-r.done
}

func (r *realtimed) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, r.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+assemblyAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s: GET %s: %v", r.name, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s: GET %s: %d %s", r.name, path, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func (r *realtimed) snapshot(t *testing.T) stream.Snapshot {
	var s stream.Snapshot
	r.getJSON(t, "/v2/realtime/metrics", &s)
	return s
}

// fleet is the instances of the fleet overview, by name.
func (r *realtimed) fleet(t *testing.T) map[string]bool {
	var ov httpapi.OverviewBody
	r.getJSON(t, "/v2/monitoring/overview", &ov)
	out := map[string]bool{}
	for _, row := range ov.Overview.InstanceRows {
		out[row.Instance] = true
	}
	return out
}

// setRollout changes realtime-streaming-v2's rollout through r's admin API.
func (r *realtimed) setRollout(t *testing.T, pct int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, r.base+"/v2/flags/admin/realtime-streaming-v2",
		strings.NewReader(fmt.Sprintf(`{"rollout":%d,"reason":"assembly test"}`, pct)))
	req.Header.Set("Authorization", "Bearer "+assemblyAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: flag change: %d", r.name, resp.StatusCode)
	}
}

func (r *realtimed) rollout(t *testing.T) int {
	var body struct {
		Flags []struct {
			Name    string
			Rollout int
		}
	}
	r.getJSON(t, "/v2/flags/admin", &body)
	for _, f := range body.Flags {
		if f.Name == "realtime-streaming-v2" {
			return f.Rollout
		}
	}
	return -1
}

func instancesOf(rs []*realtimed) []*instance {
	var out []*instance
	for _, r := range rs {
		out = append(out, r.instance)
	}
	return out
}

// Three realtimed on one Postgres (-postgres-url), clients spread across them, events
// published through every instance; one is killed with SIGKILL mid-stream. Every
// client gets every event of its channels once, in order, those of the dead instance
// by resuming on the others from the Postgres bus (the windows are tiny). The
// survivors share the flags through the database, and the dead instance's fleet
// record expires by itself (nothing withdrew it).
func TestAssemblyPostgresThreeInstancesOneKilled(t *testing.T) {
	testutil.SkipReexec(t)
	t.Parallel()
	url := pgtest.Start(t, pgtest.Options{}).DB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var rds []*realtimed
	for i := range 3 {
		rds = append(rds, startRealtimed(t, fmt.Sprintf("pg-%d", i), url, "-window", "2"))
	}
	ins := instancesOf(rds)
	epoch := rds[0].snapshot(t).Epoch
	for _, r := range rds[1:] {
		if e := r.snapshot(t).Epoch; e != epoch {
			t.Fatalf("%s: epoch %s, %s has %s", r.name, e, rds[0].name, epoch)
		}
	}
	start := protocol.Cursor{Epoch: epoch, Seq: rds[0].snapshot(t).HeadSeq}

	channels := []string{"a", "b", "c", "d"}
	gate := newDialGate()
	hc := gate.client()
	var recs []*recorder
	for i := range 24 {
		chs := []string{channels[i%4], channels[(i+1)%4]}
		recs = append(recs, startGatedRecorder(ctx, fmt.Sprintf("client-%d", i), rotate(ins, i%3), chs, start, hc))
	}
	defer func() {
		for _, r := range recs {
			r.cl.Close()
		}
	}()
	testutil.WaitFor(t, "every client subscribed", func() bool {
		for _, r := range recs {
			if len(r.recoveries()) == 0 {
				return false
			}
		}
		return true
	})
	onDead := 0
	for _, r := range recs {
		if r.cl.Instance() == "pg-2" {
			onDead++
		}
	}
	if onDead == 0 {
		t.Fatal("no client on pg-2")
	}
	testutil.WaitFor(t, "three instances in every fleet overview", func() bool {
		for _, r := range rds {
			if len(r.fleet(t)) != 3 {
				return false
			}
		}
		return true
	})

	p := newPublisher(t, ins...)
	p.key = server.DevPublisherKey
	var killedAt time.Time
	const rounds = 30 // each round: 5 events on every channel, through the next instance
	for round := range rounds {
		if round == rounds/2 {
			// Its clients reconnect only once the survivors dispatched past their
			// windows: their resumes must come from the bus.
			gate.hold()
			rds[2].kill()
			p.remove(ins[2])
			killedAt = time.Now()
			t.Logf("killed pg-2 after %d events (%d clients on it)", len(p.order), onDead)
		}
		for _, ch := range channels {
			if err := p.publish(ctx, batch("x", ch, round*5, 5)); err != nil {
				t.Fatal(err)
			}
		}
		if round == rounds/2 {
			last := p.lastSeq()
			testutil.WaitFor(t, "survivors dispatched the round after the kill", func() bool {
				return rds[0].snapshot(t).HeadSeq >= last && rds[1].snapshot(t).HeadSeq >= last
			})
			gate.release()
		}
	}
	waitComplete(t, 2*time.Minute, p, recs)

	var moved, busRecoveries int
	for _, r := range recs {
		if st := r.cl.Stats(); st.Reconnects > 0 {
			moved++
			if r.cl.Instance() == "pg-2" {
				t.Errorf("%s still on pg-2", r.name)
			}
			if st.NotRecovered > 0 {
				t.Errorf("%s: %d resumes not recovered: %+v", r.name, st.NotRecovered, r.recoveries())
			}
		}
		for _, rec := range r.recoveries() {
			if rec.Source == "bus" {
				busRecoveries++
			}
		}
	}
	if moved < onDead {
		t.Errorf("%d clients reconnected, %d were on the killed instance", moved, onDead)
	}
	if busRecoveries == 0 {
		t.Error("no client recovered from the bus: the test did not exercise cross-instance resume")
	}
	t.Logf("%d events acked, %d publish resends, %d clients moved, %d recoveries from the Postgres bus",
		len(p.order), p.retries, moved, busRecoveries)

	// The flags are the database's: changed through one survivor, seen by the other.
	rds[0].setRollout(t, 30)
	testutil.WaitFor(t, "pg-1 to see the rollout set through pg-0", func() bool { return rds[1].rollout(t) == 30 })

	// The killed instance's record was not withdrawn; it expires (15 s TTL).
	testutil.WaitWithin(t, 2*time.Minute, "pg-2's fleet record to expire", func() bool {
		f := rds[0].fleet(t)
		return !f["pg-2"] && f["pg-0"] && f["pg-1"]
	})
	t.Logf("pg-2 gone from the fleet %v after the kill", time.Since(killedAt).Round(time.Second))
}

// Postgres crashes (immediate shutdown: no checkpoint) and restarts while events are
// published through three realtimed, each batch retried with the same ids until
// acknowledged (the harness's publisher: 503s while the database is away). Every
// acknowledged event reaches every client once, in order; afterwards the instances'
// flags and fleet records work again on the restarted database.
func TestAssemblyPostgresRestartUnderLoad(t *testing.T) {
	testutil.SkipReexec(t)
	t.Parallel()
	pg := pgtest.Start(t, pgtest.Options{})
	url := pg.DB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var rds []*realtimed
	for i := range 3 {
		rds = append(rds, startRealtimed(t, fmt.Sprintf("pgr-%d", i), url))
	}
	ins := instancesOf(rds)
	s0 := rds[0].snapshot(t)
	start := protocol.Cursor{Epoch: s0.Epoch, Seq: s0.HeadSeq}
	channels := []string{"a", "b", "c"}
	var recs []*recorder
	for i := range 12 {
		recs = append(recs, startRecorder(ctx, fmt.Sprintf("client-%d", i), rotate(ins, i%3), []string{channels[i%3]}, start))
	}
	defer func() {
		for _, r := range recs {
			r.cl.Close()
		}
	}()
	testutil.WaitFor(t, "every client subscribed", func() bool {
		for _, r := range recs {
			if len(r.recoveries()) == 0 {
				return false
			}
		}
		return true
	})
	p := newPublisher(t, ins...)
	p.key = server.DevPublisherKey
	const rounds = 24
	for round := range rounds {
		if round == rounds/3 {
			pg.Crash()
			time.Sleep(300 * time.Millisecond)
			if err := pg.Restart(); err != nil {
				t.Fatal(err)
			}
			t.Logf("postgres crashed and restarted after %d events", len(p.order))
		}
		for _, ch := range channels {
			if err := p.publish(ctx, batch("r", ch, round*10, 10)); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitComplete(t, 2*time.Minute, p, recs)
	for _, r := range recs {
		if st := r.cl.Stats(); st.NotRecovered > 0 {
			t.Errorf("%s: %d resumes not recovered: %+v", r.name, st.NotRecovered, r.recoveries())
		}
	}
	t.Logf("%d events acked, %d publish resends during the outage", len(p.order), p.retries)

	rds[2].setRollout(t, 70)
	for _, r := range rds[:2] {
		testutil.WaitFor(t, r.name+" to see the rollout after the restart", func() bool { return r.rollout(t) == 70 })
	}
	testutil.WaitFor(t, "three instances in the fleet after the restart", func() bool { return len(rds[1].fleet(t)) == 3 })
}

// A cursor older than the retention (-retention-age 1s) is answered "not recovered"
// (too_old) by realtimed on the Postgres bus; the subscription is live from then on.
func TestAssemblyPostgresReplayPastRetention(t *testing.T) {
	testutil.SkipReexec(t)
	t.Parallel()
	url := pgtest.Start(t, pgtest.Options{}).DB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := startRealtimed(t, "pg-ret", url, "-retention-age", "1s", "-window", "2")
	p := newPublisher(t, r.instance)
	p.key = server.DevPublisherKey
	if err := p.publish(ctx, batch("old", "a", 0, 10)); err != nil {
		t.Fatal(err)
	}
	epoch := r.snapshot(t).Epoch
	old := protocol.Cursor{Epoch: epoch, Seq: p.order[0].Seq}
	var rec protocol.Recovery
	testutil.WaitFor(t, "the old cursor to be past retention", func() bool {
		c, err := rtclient.Dial(ctx, r.ws, &rtclient.DialOptions{Channels: []string{"a"}, Cursor: &old})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		f, err := c.ReadFrame(ctx)
		if err != nil || f.Recovery == nil {
			t.Fatalf("subscribe answer: %+v %v", f, err)
		}
		rec = *f.Recovery
		return !rec.Recovered
	})
	if rec.Reason != protocol.ReasonTooOld {
		t.Fatalf("recovery %+v, want not recovered: %s", rec, protocol.ReasonTooOld)
	}
	c, err := rtclient.Dial(ctx, r.ws, &rtclient.DialOptions{Channels: []string{"a"}, Cursor: &old})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if f, err := c.ReadFrame(ctx); err != nil || f.Recovery == nil || f.Recovery.Reason != protocol.ReasonTooOld {
		t.Fatalf("subscribe answer: %+v %v", f, err)
	}
	if err := p.publish(ctx, batch("live", "a", 0, 1)); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(f.Events) > 0 {
			if f.Events[0].ID != "live-a-0" {
				t.Fatalf("first event after too_old: %s, want the live one", f.Events[0].ID)
			}
			return
		}
	}
}
