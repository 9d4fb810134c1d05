package server

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus/bustest"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// startHTTP builds a server from flags and serves it as cmd/realtimed does, on
// HTTPServer with the options' timeouts, on a loopback port.
func startHTTP(t *testing.T, args ...string) (*Server, string) {
	t.Helper()
	o, err := parseArgs(t, nil, append([]string{"-data", t.TempDir(), "-public-prefixes", "*"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	o.Env.Logger = slog.New(slog.DiscardHandler)
	ctx := testutil.Context(t)
	s, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := HTTPServer(o, s, o.Env.Logger)
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() {
		_ = hs.Close()
		s.Close()
	})
	return s, "http://" + ln.Addr().String()
}

// waitClosed reads conn until the server closes it; it fails if the connection is
// still open after a generous bound (the assertion is the closure, not its time).
func waitClosed(t *testing.T, conn net.Conn, r io.Reader) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, r)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept the connection open")
	}
}

// An idle keep-alive connection is closed after -idle-timeout, and a client that
// never finishes its headers after -read-header-timeout: neither holds a file
// descriptor and a goroutine forever.
func TestIdleAndSlowConnectionsClosed(t *testing.T) {
	_, base := startHTTP(t, "-idle-timeout", "200ms", "-read-header-timeout", "200ms")
	addr := strings.TrimPrefix(base, "http://")

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("first request: %d close=%v", resp.StatusCode, resp.Close)
	}
	waitClosed(t, conn, br) // idle now

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := fmt.Fprintf(slow, "GET /healthz HTTP/1.1\r\nHost: %s\r\n", addr); err != nil { // no blank line
		t.Fatal(err)
	}
	waitClosed(t, slow, slow)
}

// The read and write timeouts do not touch what is meant to last: a WebSocket
// outlives both, and a long-poll that waits longer than them still gets its event.
func TestTimeoutsSpareStreamsAndPolls(t *testing.T) {
	s, base := startHTTP(t, "-read-timeout", "200ms", "-write-timeout", "200ms")
	ctx := testutil.Context(t)
	c, err := rtclient.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/v2/realtime/stream", &rtclient.DialOptions{Channels: []string{"t"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if f, err := c.ReadFrame(ctx); err != nil || f.Type != protocol.TypeSubscribed {
		t.Fatalf("subscribe: %+v %v", f, err)
	}
	cur := protocol.Cursor{Seq: c.Welcome.Seq, Epoch: c.Welcome.Epoch}

	type answer struct {
		status int
		body   string
		err    error
	}
	polled := make(chan answer, 1)
	go func() {
		q := url.Values{"channels": {"t"}, "cursor": {protocol.FormatCursor(cur)}, "timeout": {"20s"}}
		resp, err := http.Get(base + "/v2/realtime/poll?" + q.Encode())
		if err != nil {
			polled <- answer{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		polled <- answer{status: resp.StatusCode, body: string(b)}
	}()
	for s.eng.Snapshot().LongPollWaiting == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second) // well past both timeouts
	if _, err := s.Publish(ctx, []*protocol.Event{{Channel: "t", ID: "late"}}); err != nil {
		t.Fatal(err)
	}
	a := <-polled
	if a.err != nil || a.status != 200 || !strings.Contains(a.body, `"late"`) {
		t.Fatalf("poll past the timeouts: %+v", a)
	}
	for {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("stream past the timeouts: %v", err)
		}
		if len(f.Events) > 0 && f.Events[0].ID == "late" {
			break
		}
	}
	// An ordinary request still gets its answer (the deadlines of the poll before do
	// not stay on a reused connection).
	for range 3 {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("readyz: %d", resp.StatusCode)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func readyz(t *testing.T, base string) (int, string) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func waitReadyz(t *testing.T, base string, code int, reason string) {
	t.Helper()
	testutil.WaitFor(t, fmt.Sprintf("readyz %d %q", code, reason), func() bool {
		got, body := readyz(t, base)
		return got == code && strings.Contains(body, reason)
	})
}

// /readyz turns 503 with a reason when NATS stops and back to 200 when it returns;
// /healthz (the process) stays 200 throughout.
func TestReadinessFollowsNATS(t *testing.T) {
	ns := bustest.Start(t)
	_, base := startHTTP(t, "-nats-url", ns.URL())
	waitReadyz(t, base, 200, "ready")
	ns.Stop()
	waitReadyz(t, base, 503, "bus")
	if resp, err := http.Get(base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz with NATS down: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	ns.Restart()
	waitReadyz(t, base, 200, "ready")
}

// A drain's first phase: readiness, new streams and new polls answer 503 with
// Retry-After while a connected client stays connected; Shutdown then tells it to
// move (4101 with a retry hint).
func TestDrainReadiness(t *testing.T) {
	s, base := startHTTP(t)
	ctx := testutil.Context(t)
	ws := "ws" + strings.TrimPrefix(base, "http") + "/v2/realtime/stream"
	c, err := rtclient.Dial(ctx, ws, &rtclient.DialOptions{Channels: []string{"d"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	_, _ = c.ReadFrame(ctx) // subscribed

	s.BeginDrain()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(b), "draining") || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("readyz while draining: %d %q %v", resp.StatusCode, b, resp.Header)
	}
	_, err = rtclient.Dial(ctx, ws, nil)
	var he *rtclient.HTTPError
	if !errors.As(err, &he) || he.Status != 503 || he.RetryAfter == "" {
		t.Fatalf("new stream while draining: %v", err)
	}
	if resp, err = http.Get(base + "/v2/realtime/poll?channels=d&timeout=0"); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("new poll while draining: %d %v", resp.StatusCode, resp.Header)
	}
	if _, err := s.Publish(ctx, []*protocol.Event{{Channel: "d", ID: "during"}}); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("connected client during the first phase: %v", err)
		}
		if len(f.Events) > 0 {
			break
		}
	}
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	for {
		if _, err := c.ReadFrame(ctx); err != nil {
			if rtclient.CloseCode(err) != protocol.CloseShutdown || protocol.RetryHint(rtclient.CloseReason(err)) <= 0 {
				t.Fatalf("at shutdown: %v", err)
			}
			break
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
