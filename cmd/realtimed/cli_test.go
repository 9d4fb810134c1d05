package main

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// -h exits 0 (run returns nil) and lists the subcommands and the flags; -version
// prints the module; a stray argument is an error that points at -h.
func TestHelpAndVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-h"}, &out, &out); err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{"realtimed token [flags]", "-version", "-addr", "$REALTIME_ADDR", "-drain-delay", "-idle-timeout"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run([]string{"help"}, &out, &out); err != nil || !strings.Contains(out.String(), "realtimed token") {
		t.Fatalf("help: %v %s", err, out.String())
	}
	out.Reset()
	if err := run([]string{"-version"}, &out, &out); err != nil || !strings.HasPrefix(out.String(), "realtimed encore.app") {
		t.Fatalf("-version: %v %q", err, out.String())
	}
	if err := run([]string{"serve"}, &out, &out); err == nil || !strings.Contains(err.Error(), "realtimed -h") {
		t.Fatalf("stray argument: %v", err)
	}
}

// realtimed token -h does not print the secret of $REALTIME_TOKEN_KEYS.
func TestTokenHelpHidesKeys(t *testing.T) {
	const secret = "s3cr3t-0123456789abcdef0123456789abcdef"
	t.Setenv("REALTIME_TOKEN_KEYS", "k1:"+secret)
	var out bytes.Buffer
	err := run([]string{"token", "-h"}, &out, &out)
	if err != nil || strings.Contains(out.String(), secret) || !strings.Contains(out.String(), "-keys") {
		t.Fatalf("token -h: %v\n%s", err, out.String())
	}
}

// A bad value in the environment is an error naming the variable, not a silent
// default; REALTIME_* variables that name no setting are reported.
func TestBadEnvironmentNamed(t *testing.T) {
	for env, want := range map[string]string{
		"REALTIME_RETENTION_AGE": "1day",
		"REALTIME_WINDOW":        "lots",
		"REALTIME_DEMO":          "yes please",
		"REALTIME_CONNECT_RATE":  "fast",
	} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, want)
			_, err := parseFlags(nil, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), "$"+env) {
				t.Fatalf("%s=%s: %v", env, want, err)
			}
		})
	}
	if u := unknownEnv([]string{"REALTIME_WINDOWS=5", "REALTIME_ADDR=x", "HOME=/", "REALTIMED_TEST_CHILD=1"}); len(u) != 1 || u[0] != "REALTIME_WINDOWS" {
		t.Fatalf("unknown: %v", u)
	}
}

// -version of a binary built from this checkout names its commit.
func TestVersionNamesCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	testutil.SkipReexec(t)
	rev, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "realtimed")
	want := strings.TrimSpace(string(rev))
	// The toolchain stamps the commit of a git clone; it does not see a git worktree
	// (.git is a file there), whose builds pass it at link time instead.
	args := []string{"build", "-buildvcs=true", "-o", bin, "."}
	if top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output(); err == nil {
		if fi, err := os.Stat(filepath.Join(strings.TrimSpace(string(top)), ".git")); err == nil && !fi.IsDir() {
			args = []string{"build", "-ldflags", "-X main.commit=" + want, "-o", bin, "."}
		}
	}
	build := exec.Command("go", args...)
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	out, err := exec.Command(bin, "-version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "commit "+want) {
		t.Fatalf("-version = %q, want commit %s", out, rev)
	}
}

// syncBuffer is a log a child writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A port in use is reported before anything starts: the embedded NATS never creates
// its store.
func TestPortInUseFailsFirst(t *testing.T) {
	testutil.SkipReexec(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	data := t.TempDir()
	cmd := exec.Command(os.Args[0], "-addr", ln.Addr().String(), "-data", data)
	cmd.Env = append(os.Environ(), "REALTIMED_TEST_CHILD=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "-addr ($REALTIME_ADDR)") ||
		!strings.Contains(string(out), "address already in use") {
		t.Fatalf("port in use: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(data, "nats")); !os.IsNotExist(err) {
		t.Fatalf("NATS started before the port was bound: %v", err)
	}
}

func status(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String(), resp.Header
}

// SIGTERM drains in two phases: first /readyz and new streams answer 503 with
// Retry-After while the listener stays open and a connected client stays connected;
// a second signal (here; else -drain-delay) tells connected clients to move (4101
// with a retry hint) and the process exits 0. The log says what NATS listens on.
func TestDrainPhases(t *testing.T) {
	testutil.SkipReexec(t)
	addr := testutil.FreeAddr(t)
	var log syncBuffer
	srv := startChildLog(t, addr, t.TempDir(), &log, "-drain-delay", "5m", "-log-level", "info")
	if !strings.Contains(log.String(), `listen="none (in-process only)"`) {
		t.Errorf("NATS log line: %s", log.String())
	}
	ctx := testutil.Context(t)
	ws := "ws://" + addr + "/v2/realtime/stream"
	c, err := rtclient.Dial(ctx, ws, &rtclient.DialOptions{Channels: []string{"k"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if f, err := c.ReadFrame(ctx); err != nil || f.Type != protocol.TypeSubscribed {
		t.Fatalf("subscribe: %+v %v", f, err)
	}
	if code, body, _ := status(t, srv.base+"/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("readyz before the drain: %d %q", code, body)
	}

	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for {
		code, body, h := status(t, srv.base+"/readyz")
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "draining") || h.Get("Retry-After") == "" {
				t.Fatalf("readyz while draining: %q %v", body, h)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("readyz never turned 503")
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, err = rtclient.Dial(ctx, ws, nil)
	var he *rtclient.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusServiceUnavailable || he.RetryAfter == "" {
		t.Fatalf("new stream while draining: %v", err)
	}
	if code, _, _ := status(t, srv.base+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz while draining: %d", code)
	}
	publishHTTP(t, srv.base, 0, 1) // the connected client is still served
	for {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("connected client during the first phase: %v", err)
		}
		if len(f.Events) > 0 {
			break
		}
	}

	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil { // hurry
		t.Fatal(err)
	}
	for {
		_, err := c.ReadFrame(ctx)
		if err == nil {
			continue
		}
		if rtclient.CloseCode(err) != protocol.CloseShutdown || protocol.RetryHint(rtclient.CloseReason(err)) <= 0 {
			t.Fatalf("connected client at shutdown: %v", err)
		}
		break
	}
	if err := srv.cmd.Wait(); err != nil {
		t.Fatalf("exit: %v\n%s", err, log.String())
	}
}

// -h shows no secret taken from the environment (keys, NATS and Postgres URLs, credentials).
func TestHelpHidesSecrets(t *testing.T) {
	secrets := map[string]string{
		"REALTIME_TOKEN_KEYS":    "k1:tok3n-0123456789abcdef0123456789abcdef",
		"REALTIME_PUBLISHER_KEY": "pub-s3cr3t-0123456789",
		"REALTIME_ADMIN_KEY":     "adm-s3cr3t-0123456789",
		"REALTIME_NATS_URL":      "nats://u:natspw0rd@127.0.0.1:4222",
		"REALTIME_NATS_PASSWORD": "natspw0rd2",
		"REALTIME_NATS_TOKEN":    "natst0ken",
		"REALTIME_POSTGRES_URL":  "postgres://u:pgpassw0rd@127.0.0.1:5432/db",
	}
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	var out bytes.Buffer
	if err := run([]string{"-h"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"tok3n", "pub-s3cr3t", "adm-s3cr3t", "natspw0rd", "natst0ken", "pgpassw0rd"} {
		if strings.Contains(out.String(), v) {
			t.Errorf("-h shows %q", v)
		}
	}
}
