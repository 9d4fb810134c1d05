package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"encore.app/internal/testutil"
	"encore.app/realtime/auth"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// TestMain doubles as the server: the kill test re-runs this binary as realtimed.
func TestMain(m *testing.M) {
	if os.Getenv("REALTIMED_TEST_CHILD") == "1" {
		main()
		return
	}
	goleak.VerifyTestMain(m, testutil.LeakOptions()...)
}

type child struct {
	cmd  *exec.Cmd
	base string
}

func startChild(t *testing.T, addr, data string, extra ...string) *child {
	t.Helper()
	return startChildLog(t, addr, data, nil, extra...)
}

// startChildLog starts realtimed (this binary) in dev mode, where anonymous clients
// read channel "k" and the publisher key is "dev", with its log on stderr (nil: the
// test's output, shown if the test fails), and waits until it is ready.
func startChildLog(t *testing.T, addr, data string, stderr io.Writer, extra ...string) *child {
	t.Helper()
	args := append([]string{"-addr", addr, "-data", data, "-log-level", "warn", "-public-prefixes", "*"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "REALTIMED_TEST_CHILD=1")
	if stderr == nil {
		stderr = testutil.Writer(t) // its DEV MODE warnings: shown if the test fails
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, base: "http://" + addr}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testutil.WaitFor(t, "the server to be ready", func() bool {
		resp, err := http.Get(c.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}
		return false
	})
	return c
}

func publishHTTP(t *testing.T, base string, from, n int) {
	t.Helper()
	var evs []string
	for i := from; i < from+n; i++ {
		evs = append(evs, fmt.Sprintf(`{"channel":"k","id":"k-%d","data":{"n":%d}}`, i, i))
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/v2/realtime/publish", strings.NewReader(`{"events":[`+strings.Join(evs, ",")+`]}`))
	req.Header.Set("Authorization", "Bearer dev")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct{ Acks []struct{ Seq uint64 } }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || len(out.Acks) != n {
		t.Fatalf("publish: %d %v %+v", resp.StatusCode, err, out)
	}
}

// A server killed with SIGKILL and restarted on the same data directory: a client that
// reconnects with its cursor gets every event acknowledged before the kill and
// everything after, once each.
func TestKillAndRestartResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns servers")
	}
	testutil.SkipReexec(t)
	addr, data := testutil.FreeAddr(t), t.TempDir()
	srv := startChild(t, addr, data)
	ctx := testutil.Context(t)
	ws := "ws://" + addr + "/v2/realtime/stream"
	c, err := rtclient.Dial(ctx, ws, &rtclient.DialOptions{Channels: []string{"k"}})
	if err != nil {
		t.Fatal(err)
	}
	if f, err := c.ReadFrame(ctx); err != nil || f.Type != protocol.TypeSubscribed {
		t.Fatalf("subscribe: %+v %v", f, err)
	}
	publishHTTP(t, srv.base, 0, 100)
	var got []protocol.Event
	for len(got) < 30 {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, f.Events...)
	}
	got = got[:30] // the client "processed" 30 events
	cur := protocol.Cursor{Seq: got[29].Seq, Epoch: c.Welcome.Epoch}

	if err := srv.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = srv.cmd.Wait()
	c.CloseNow()

	srv = startChild(t, addr, data)
	publishHTTP(t, srv.base, 100, 50)
	c, err = rtclient.Dial(ctx, ws, &rtclient.DialOptions{Channels: []string{"k"}, Cursor: &cur})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if c.Welcome.Epoch != cur.Epoch {
		t.Fatalf("epoch changed across restart: %s -> %s", cur.Epoch, c.Welcome.Epoch)
	}
	f, err := c.ReadFrame(ctx)
	if err != nil || f.Recovery == nil || !f.Recovery.Recovered {
		t.Fatalf("recovery: %+v %v", f, err)
	}
	for len(got) < 150 {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("after %d events: %v", len(got), err)
		}
		got = append(got, f.Events...)
	}
	publishHTTP(t, srv.base, 150, 1) // live after the replay
	for len(got) < 151 {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, f.Events...)
	}
	for i, ev := range got {
		if ev.ID != fmt.Sprintf("k-%d", i) {
			t.Fatalf("event %d is %s", i, ev.ID)
		}
	}
	if len(got) != 151 {
		t.Fatalf("%d events", len(got))
	}
}

// Flags and environment variables both configure the server.
func TestFlagsAndEnv(t *testing.T) {
	t.Setenv("REALTIME_ADDR", "127.0.0.1:5999")
	t.Setenv("REALTIME_BATCH_WINDOW", "7ms")
	o, err := parseFlags([]string{"-batch-max", "42"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.Addr != "127.0.0.1:5999" || o.BatchWindow != 7*time.Millisecond || o.BatchMax != 42 {
		t.Fatalf("%+v", o)
	}
	if _, err := parseFlags([]string{"-no-such-flag"}, io.Discard); err == nil {
		t.Fatal("unknown flag accepted")
	}
	if _, err := parseFlags([]string{"-batch-max", "0"}, io.Discard); err == nil || !strings.Contains(err.Error(), "-batch-max") {
		t.Fatalf("bad value: %v", err)
	}
}

// realtimed token mints with the keys of the flag or of the environment.
func TestTokenCommand(t *testing.T) {
	const keys = "k1:0123456789abcdef0123456789abcdef-test"
	t.Setenv("REALTIME_TOKEN_KEYS", keys)
	var out strings.Builder
	if err := tokenCommand([]string{"-user", "9", "-channels", "a.*, b"}, &out); err != nil {
		t.Fatal(err)
	}
	k, _ := auth.ParseKeys(keys)
	c, err := k.Verify(strings.TrimSpace(out.String()))
	if err != nil || c.Subject != "9" || strings.Join(c.Channels, "|") != "a.*|b" {
		t.Fatalf("token %q: %+v %v", out.String(), c, err)
	}
	if err := tokenCommand([]string{"-keys", "k:short", "-user", "9"}, &out); err == nil {
		t.Fatal("short key accepted")
	}
}
