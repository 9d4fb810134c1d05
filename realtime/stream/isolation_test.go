//go:build linux

package stream

import (
	"bufio"
	"context"
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

	"encore.app/internal/testutil"
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
	if _, err := nc.Write(upgradeRequest(u)); err != nil {
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
// ones get every event in order and are never closed. The stalled ones fall back to the
// replay window (their queues stop growing) and are reset once their sockets took
// nothing for WriteTimeout; with a queue budget smaller than what they queued before
// falling back, they are the ones it closes (4105), largest first.
func TestStalledSocketsBesideHealthyReaders(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    Config
		reason DisconnectReason
	}{
		{"stall timeout", Config{WriteTimeout: 2 * time.Second}, DiscWriteError},
		{"queue budget", Config{WriteTimeout: time.Minute, QueueBudget: 128 << 10}, DiscQueueBudget},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.HeartbeatInterval = time.Minute
			stalledBesideHealthy(t, cfg, tc.reason)
		})
	}
}

func stalledBesideHealthy(t *testing.T, cfg Config, reason DisconnectReason) {
	env := newEnv(t, cfg, bus.Config{})
	ctx := testutil.Context(t)
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
	testutil.WaitFor(t, "every subscription", func() bool { return env.eng.Snapshot().Subscriptions == healthy+stalled })
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
	var peakQueued int64
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
		peakQueued = max(peakQueued, env.eng.Snapshot().QueuedBytes)
	}
	wg.Wait()
	for i := range got {
		checkSequence(t, got[i], "iso", 0, total)
	}
	testutil.WaitFor(t, "every stalled connection closed", func() bool {
		return env.eng.Snapshot().Disconnects[reason.String()] == stalled
	})
	testutil.WaitFor(t, "every stalled socket reset", func() bool {
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
	if s.SlowDisconnects != 0 {
		t.Errorf("%d slow-consumer closes", s.SlowDisconnects)
	}
	// What the stalled connections held: at most lagBytes each (then the window), and
	// every frame counts once.
	if limit := int64(stalled * (lagBytes + lagItems*itemCost)); peakQueued > limit {
		t.Errorf("queued bytes peaked at %d, over %d", peakQueued, limit)
	}
	if reason == DiscQueueBudget && s.BudgetCloses != stalled {
		t.Errorf("%d budget closes", s.BudgetCloses)
	}
	if reason == DiscWriteError && s.LagFallbacks < stalled {
		t.Errorf("%d connections fell back to the window, want the %d stalled ones", s.LagFallbacks, stalled)
	}
	for _, c := range conns {
		c.CloseNow()
	}
	testutil.WaitFor(t, "every connection gone", func() bool { return env.eng.Snapshot().ActiveConnections == 0 })
	if q := env.eng.Snapshot().QueuedBytes; q != 0 {
		t.Errorf("%d bytes still counted as queued with no connection left", q)
	}
}

// The budget closes the connections holding the most unsent bytes, largest first, until
// the total is under three quarters of the budget; the others stay open.
func TestQueueBudgetShedsLargestFirst(t *testing.T) {
	e, err := New(Config{Logger: testutil.Logger(t), QueueBudget: 1000, QueueMaxBytes: 1 << 20}, stubBus{})
	if err != nil {
		t.Fatal(err)
	}
	var cs []*Client
	for _, n := range []int{100, 400, 50, 300, 200, 150} {
		c := &Client{e: e, sched: schedJob} // a writer that is busy: nothing is pushed
		e.clients[c] = struct{}{}
		pl := n - 2
		if pl >= 126 {
			pl = n - 4 // 16-bit length
		}
		c.offer(item{fr: newTextFrame(make([]byte, pl))}) // a frame of n bytes with its header
		cs = append(cs, c)
	}
	if used := e.budget.used.Load(); used != 1200+6*itemCost {
		t.Fatalf("%d bytes counted, want %d", used, 1200+6*itemCost)
	}
	if n, _ := e.shed(); n != 2 {
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
	if used := e.budget.used.Load(); used != 500+4*itemCost {
		t.Errorf("%d bytes counted after the closes, want %d", used, 500+4*itemCost)
	}
	// A connection that is closing but still holds its bytes (its writer has not run
	// yet: here a close that flushes first) counts as freed: nobody else is closed for
	// them, however far over the budget they keep the total.
	x := &Client{e: e, sched: schedJob}
	e.clients[x] = struct{}{}
	x.offer(item{fr: newTextFrame(make([]byte, 2500-4))})
	x.requestClose(protocol.CloseNormal, "bye", 0, DiscKicked, true)
	if used := e.budget.used.Load(); used != 3000+5*itemCost {
		t.Fatalf("%d bytes counted, want %d", used, 3000+5*itemCost)
	}
	if n, releasing := e.shed(); n != 0 || releasing != 2500 {
		t.Errorf("shed closed %d with %d bytes on their way out, want none closed and 2500", n, releasing)
	}
	for i, c := range cs {
		if i != 1 && i != 3 && c.closing() {
			t.Errorf("connection %d closed while the closing one still held its bytes", i)
		}
	}
}

// A client that pings without reading makes the library queue pongs for a socket that
// takes nothing: past maxCtrlBytes the connection is reset.
func TestPongBacklogBound(t *testing.T) {
	env := newEnv(t, Config{ClientMessageRate: -1, HeartbeatInterval: time.Minute}, bus.Config{})
	ctx := testutil.Context(t)
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
	testutil.WaitFor(t, "connection reset", func() bool {
		return env.eng.Snapshot().Disconnects[DiscWriteError.String()] == 1
	})
}

// A stream socket starts with a small kernel send buffer, and one that drains full
// buffers doubles it up to SendBuffer.
func TestSendBufferGrowsWhenDrained(t *testing.T) {
	env := newEnv(t, Config{SendBuffer: 64 << 10, HeartbeatInterval: time.Minute}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)
	defer c.CloseNow()
	subscribe(t, ctx, c, nil, "sb")
	var server *Client
	env.eng.Clients(func(x *Client) { server = x })
	sndbuf := func() int {
		rc, err := server.cc.tcp.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var n int
		_ = rc.Control(func(fd uintptr) { n, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) })
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := sndbuf(); n != 2*sndbufStart { // Linux doubles the requested size for its bookkeeping
		t.Fatalf("SO_SNDBUF %d at the start, want %d", n, 2*sndbufStart)
	}
	// Publish more than the buffers hold while the client does not read, then read.
	pad := strings.Repeat("b", 8000)
	const total = 200
	for n := 0; n < total; n += 20 {
		var evs []*protocol.Event
		for k := n; k < n+20; k++ {
			evs = append(evs, &protocol.Event{ID: fmt.Sprintf("sb-%d", k), Channel: "sb", Data: []byte(`"` + pad + `"`)})
		}
		env.publish(evs...)
	}
	got, _ := readEvents(t, ctx, c, total)
	checkSequence(t, got, "sb", 0, total)
	if n := sndbuf(); n != 2*64<<10 {
		t.Errorf("SO_SNDBUF %d after draining, want it grown to %d", n, 2*64<<10)
	}
}

// A reader that pauses long enough for its socket to fill falls back to the replay
// window, then reads every event of its channels from it, exactly once and in seq order
// across channels, and is live again once it caught up.
func TestLaggingReaderReadsFromWindow(t *testing.T) {
	env := newEnv(t, Config{HeartbeatInterval: time.Minute}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)
	defer c.CloseNow()
	subscribe(t, ctx, c, nil, "la", "lb")
	other := env.dial(ctx, nil) // another channel's subscriber, unaffected
	defer other.CloseNow()
	subscribe(t, ctx, other, nil, "lc")
	pad := strings.Repeat("w", 3000)
	const total = 1200 // 3.6 MB: far more than the socket buffers and lagBytes
	for n := 0; n < total; n += 39 {
		var evs []*protocol.Event
		for k := n; k < min(n+39, total); k++ {
			ch := []string{"la", "lb", "lc"}[k%3]
			evs = append(evs, &protocol.Event{ID: fmt.Sprintf("%s-%d", ch, k/3), Channel: ch, Data: []byte(`"` + pad + `"`)})
		}
		env.publish(evs...)
	}
	testutil.WaitFor(t, "the reader fell back to the window", func() bool { return env.eng.Snapshot().LagFallbacks > 0 })
	got, _ := readEvents(t, ctx, c, total*2/3)
	var last uint64
	seen := map[string]bool{}
	for _, ev := range got {
		if ev.Seq <= last || seen[ev.ID] || (ev.Channel != "la" && ev.Channel != "lb") {
			t.Fatalf("event %s (seq %d, %s) after seq %d", ev.ID, ev.Seq, ev.Channel, last)
		}
		last, seen[ev.ID] = ev.Seq, true
	}
	lc, _ := readEvents(t, ctx, other, total/3)
	checkSequence(t, lc, "lc", 0, total/3)
	// Live again: the next event arrives without any window read.
	before := env.eng.Snapshot().WindowFrames
	env.publishN("la", 10000, 1)
	if evs, _ := readEvents(t, ctx, c, 1); evs[0].ID != "la-10000" {
		t.Fatalf("next event %s", evs[0].ID)
	}
	if s := env.eng.Snapshot(); s.WindowFrames != before || s.SlowDisconnects != 0 {
		t.Errorf("window frames %d -> %d, slow closes %d", before, s.WindowFrames, s.SlowDisconnects)
	}
}

// A ping queued to a connection that fell back to the replay window carries a head
// beyond what the connection has read from the window: it is written only after the
// connection's events up to that head, so a client may still take its seq as a cursor.
func TestLaggingReaderPingFollowsWindow(t *testing.T) {
	env := newEnv(t, quietHeartbeats, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)
	defer c.CloseNow()
	subscribe(t, ctx, c, nil, "lp")
	pad := strings.Repeat("p", 3000)
	const total = 1200 // 3.6 MB: far more than the socket buffers and lagBytes
	var last uint64
	for n := 0; n < total; n += 40 {
		var evs []*protocol.Event
		for k := n; k < n+40; k++ {
			evs = append(evs, &protocol.Event{ID: fmt.Sprintf("lp-%d", k), Channel: "lp", Data: []byte(`"` + pad + `"`)})
		}
		acks := env.publish(evs...)
		last = acks[len(acks)-1].Seq
	}
	env.waitFanned(last)
	lagging := func() bool {
		for _, cl := range env.eng.snapshotClients() {
			cl.mu.Lock()
			l := cl.lagging
			cl.mu.Unlock()
			if l {
				return true
			}
		}
		return false
	}
	testutil.WaitFor(t, "the reader fell back to the window", lagging)
	env.heartbeatNow() // a ping with seq = last, queued while the connection lags
	received := 0
	for {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("after %d events: %v", received, err)
		}
		received += len(f.Events)
		if f.Type == protocol.TypePing && f.Seq > 0 {
			if f.Seq < last {
				t.Fatalf("ping seq %d, want %d", f.Seq, last)
			}
			if received != total {
				t.Fatalf("ping carrying seq %d arrived after %d of the %d events up to it", f.Seq, received, total)
			}
			return
		}
	}
}

// A peer that stops reading is moved to the flusher's slow lane once the kernel holds
// bytes it could not send to it; a peer that reads everything stays in the fast lane.
func TestStalledPeerTakesSlowLane(t *testing.T) {
	env := newEnv(t, Config{WriteTimeout: time.Minute, HeartbeatInterval: time.Minute}, bus.Config{})
	ctx := testutil.Context(t)
	healthy := env.dial(ctx, nil)
	defer healthy.CloseNow()
	subscribe(t, ctx, healthy, nil, "lane")
	stalled := dialStalled(t, ctx, env.url+"?channels=lane")
	defer stalled.nc.Close()
	testutil.WaitFor(t, "both subscriptions", func() bool { return env.eng.Snapshot().Subscriptions == 2 })
	var stalledC, healthyC *Client
	env.eng.Clients(func(c *Client) {
		if c.cc.RemoteAddr().String() == stalled.nc.LocalAddr().String() {
			stalledC = c
		} else {
			healthyC = c
		}
	})
	if stalledC == nil || healthyC == nil {
		t.Fatal("the two server-side connections not found")
	}
	pad := strings.Repeat("l", 600)
	n := 0
	// One event at a time, each read by the healthy client before the next: it never
	// has more than one frame unread.
	testutil.WaitFor(t, "the stalled connection's writers in the slow lane", func() bool {
		env.publish(&protocol.Event{ID: fmt.Sprintf("lane-%d", n), Channel: "lane", Data: []byte(`"` + pad + `"`)})
		n++
		got, _ := readEvents(t, ctx, healthy, 1)
		if len(got) != 1 {
			t.Fatalf("healthy client read %d events", len(got))
		}
		return stalledC.cc.slowPeer.Load() && env.eng.Snapshot().SlowLaneTurns > 0
	})
	if healthyC.cc.slowPeer.Load() {
		t.Error("the healthy connection is in the slow lane")
	}
	t.Logf("%d events published before the stalled peer's writer took the slow lane", n)
}
