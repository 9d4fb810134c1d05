//go:build linux

package stream

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// stalledSocket is a raw WebSocket client with a small receive buffer that never reads
// after the upgrade: a stalled mobile socket, or an attacker.
type stalledSocket struct {
	nc *net.TCPConn
}

func dialStalled(t testing.TB, ctx context.Context, wsURL string) *stalledSocket {
	t.Helper()
	u, err := url.Parse(wsURL)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
	}}
	nc, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(nc, 16), nil) // reads little past the headers
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return &stalledSocket{nc: nc.(*net.TCPConn)}
}

// hungUp reports whether the server closed or reset the socket, without reading it.
func (s *stalledSocket) hungUp() bool {
	rc, err := s.nc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	_ = rc.Control(func(fd uintptr) {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(p, 0); err == nil && n > 0 {
			gone = p[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return gone
}

// Connections that never read sit beside healthy readers on one channel: the healthy
// ones get every event in order and are never closed; the stalled ones hold the most
// unsent data when the queue budget is exceeded (each would exceed it alone), so they
// are the ones closed (4105), and their sockets are reset (they cannot take a close
// frame).
func TestStalledSocketsBesideHealthyReaders(t *testing.T) {
	const budget = 1 << 20
	env := newEnv(t, Config{QueueBudget: budget, WriteTimeout: time.Minute, HeartbeatInterval: time.Minute}, bus.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const healthy, stalled, total = 8, 16, 400
	var got [healthy][]protocol.Event
	var read [healthy]atomic.Int64
	var wg sync.WaitGroup
	conns := make([]*rtclient.Conn, healthy)
	for i := range conns {
		conns[i] = env.dial(ctx, nil)
		subscribe(t, ctx, conns[i], nil, "iso")
	}
	var stalledConns []*stalledSocket
	for range stalled {
		stalledConns = append(stalledConns, dialStalled(t, ctx, env.url+"?channels=iso"))
	}
	defer func() {
		for _, s := range stalledConns {
			s.nc.Close()
		}
	}()
	waitFor(t, 10*time.Second, "every subscription", func() bool { return env.eng.Snapshot().Subscriptions == healthy+stalled })
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for len(got[i]) < total {
				f, err := c.ReadFrame(ctx)
				if err != nil {
					t.Errorf("healthy client %d after %d events: %v", i, len(got[i]), err)
					return
				}
				got[i] = append(got[i], f.Events...)
				read[i].Store(int64(len(got[i])))
			}
		}()
	}
	pad := strings.Repeat("s", 4000)
	for n := 0; n < total; n += 4 {
		// Paced by the slowest healthy reader: a busy machine may stall one, and it must
		// not hold more than the stalled sockets when the budget is exceeded.
		for slowest := int64(0); ctx.Err() == nil; time.Sleep(time.Millisecond) {
			slowest = int64(total)
			for i := range read {
				slowest = min(slowest, read[i].Load())
			}
			if int64(n)-slowest <= 4 {
				break
			}
		}
		var evs []*protocol.Event
		for k := n; k < n+4; k++ {
			evs = append(evs, &protocol.Event{ID: fmt.Sprintf("iso-%d", k), Channel: "iso", Data: []byte(`"` + pad + `"`)})
		}
		env.publish(evs...)
	}
	wg.Wait()
	for i := range got {
		checkSequence(t, got[i], "iso", 0, total)
	}
	waitFor(t, 10*time.Second, "every stalled connection closed for the budget", func() bool {
		return env.eng.Snapshot().Disconnects[DiscQueueBudget.String()] == stalled
	})
	waitFor(t, 10*time.Second, "every stalled socket reset", func() bool {
		for _, s := range stalledConns {
			if !s.hungUp() {
				return false
			}
		}
		return true
	})
	s := env.eng.Snapshot()
	if s.ActiveConnections != healthy {
		t.Errorf("%d connections open, want the %d healthy ones", s.ActiveConnections, healthy)
	}
	if s.BudgetCloses != stalled || s.SlowDisconnects != 0 || s.Drops[DropQueueBudget.String()] == 0 {
		t.Errorf("budget closes %d, slow-consumer closes %d, budget drops %d", s.BudgetCloses, s.SlowDisconnects, s.Drops[DropQueueBudget.String()])
	}
	if s.QueuedBytes > budget {
		t.Errorf("%d bytes queued, over the budget", s.QueuedBytes)
	}
	for _, c := range conns {
		c.CloseNow()
	}
	waitFor(t, 10*time.Second, "every connection gone", func() bool { return env.eng.Snapshot().ActiveConnections == 0 })
	if q := env.eng.Snapshot().QueuedBytes; q != 0 {
		t.Errorf("%d bytes still counted as queued with no connection left", q)
	}
}

// The budget closes the connections holding the most unsent bytes, largest first, until
// the total is under three quarters of the budget; the others stay open.
func TestQueueBudgetShedsLargestFirst(t *testing.T) {
	e, err := New(Config{Logger: quietLogger(), QueueBudget: 1000, QueueMaxBytes: 1 << 20}, stubBus{})
	if err != nil {
		t.Fatal(err)
	}
	var cs []*Client
	for _, n := range []int{100, 400, 50, 300, 200, 150} {
		c := &Client{e: e, subs: map[string]struct{}{}, sched: schedJob} // a writer that is busy: nothing is pushed
		c.ctx, c.cancel = context.WithCancel(context.Background())
		defer c.cancel()
		e.clients[c] = struct{}{}
		pl := n - 2
		if pl >= 126 {
			pl = n - 4 // 16-bit length
		}
		c.offer(item{fr: newTextFrame(make([]byte, pl))}) // a frame of n bytes with its header
		cs = append(cs, c)
	}
	if used := e.budget.used.Load(); used != 1200 {
		t.Fatalf("%d bytes counted, want 1200", used)
	}
	if n := e.shed(); n != 2 {
		t.Fatalf("%d connections closed, want 2 (400 and 300: 1200-700 is under 750)", n)
	}
	for i, want := range []bool{false, true, false, true, false, false} {
		cs[i].mu.Lock()
		closing := cs[i].state != stateOpen
		code := cs[i].closeCode
		cs[i].mu.Unlock()
		if closing != want || (want && code != protocol.CloseQueueBudget) {
			t.Errorf("connection %d: closing %v (code %d), want %v", i, closing, code, want)
		}
	}
	if used := e.budget.used.Load(); used != 500 {
		t.Errorf("%d bytes counted after the closes, want 500", used)
	}
}

// A client that pings without reading makes the library queue pongs for a socket that
// takes nothing: past maxCtrlBytes the connection is reset.
func TestPongBacklogBound(t *testing.T) {
	env := newEnv(t, Config{ClientMessageRate: -1, HeartbeatInterval: time.Minute}, bus.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := dialStalled(t, ctx, env.url)
	defer s.nc.Close()
	payload := make([]byte, 125)
	var mask [4]byte
	frame := append([]byte{0x80 | 0x9, 0x80 | 125}, mask[:]...) // masked ping, zero mask
	frame = append(frame, payload...)
	_ = s.nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
	for i := 0; i < 5000 && !s.hungUp(); i++ {
		if _, err := s.nc.Write(frame); err != nil {
			break // reset by the server
		}
	}
	waitFor(t, 10*time.Second, "connection reset", func() bool {
		return env.eng.Snapshot().Disconnects[DiscWriteError.String()] == 1
	})
}

// Each stream socket gets the configured kernel send buffer.
func TestSendBuffer(t *testing.T) {
	env := newEnv(t, Config{SendBuffer: 32 << 10}, bus.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := env.dial(ctx, nil)
	defer c.CloseNow()
	var server *Client
	env.eng.Clients(func(x *Client) { server = x })
	rc, err := server.cc.tcp.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	_ = rc.Control(func(fd uintptr) { n, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) })
	if err != nil {
		t.Fatal(err)
	}
	if n != 64<<10 { // Linux doubles the requested size for its bookkeeping
		t.Errorf("SO_SNDBUF %d, want %d", n, 64<<10)
	}
}
