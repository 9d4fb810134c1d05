//go:build linux

package stream

import (
	"bytes"
	"runtime"
	"testing"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// readLoopGoroutines counts the goroutines running a connection's reader.
func readLoopGoroutines() int {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("stream.(*Client).readLoop("))
}

// Connections whose clients send nothing wait for their next frame without a goroutine
// (the read parker, reader.go), and still get their events, answer their clients'
// frames, and end however the client or the server ends them: a client's close frame, a
// client's socket closed without one, and a server close the client never answers (its
// read then has a deadline: the reader must leave the parker for it).
func TestIdleReadersParkWithoutGoroutines(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	ctx := testutil.Context(t)
	const n = 24
	conns := make([]*rtclient.Conn, n)
	for i := range conns {
		conns[i] = env.dial(ctx, nil)
		subscribe(t, ctx, conns[i], nil, "room")
	}
	parked := func(want int64) func() bool {
		return func() bool { return env.eng.Snapshot().ParkedReaders == want }
	}
	testutil.WaitFor(t, "every idle reader parked", parked(n))
	if g := readLoopGoroutines(); g != 0 {
		t.Fatalf("%d goroutines run a reader while every connection is idle", g)
	}

	// Writers do not need the reader: every parked connection gets the event.
	env.publishN("room", 0, 1)
	for i, c := range conns {
		evs, _ := readEvents(t, ctx, c, 1)
		if evs[0].ID != "room-0" {
			t.Fatalf("client %d got %q", i, evs[0].ID)
		}
	}
	// A frame wakes the reader, which answers it and parks again.
	for i, c := range conns {
		if err := c.Send(ctx, &protocol.ClientFrame{Type: protocol.TypePing, TS: int64(i)}); err != nil {
			t.Fatal(err)
		}
		for {
			f, err := c.ReadFrame(ctx)
			if err != nil {
				t.Fatalf("client %d waiting for its pong: %v", i, err)
			}
			if f.Type == protocol.TypePong {
				break
			}
		}
	}
	testutil.WaitFor(t, "the readers parked again after their pings", parked(n))

	active := func(want int64) func() bool {
		return func() bool { return env.eng.Snapshot().ActiveConnections == want }
	}
	// A third close with a close frame, a third drop their sockets.
	for _, c := range conns[:n/3] {
		_ = c.Close()
	}
	for _, c := range conns[n/3 : 2*n/3] {
		_ = c.CloseNow()
	}
	testutil.WaitFor(t, "the clients' closes tore their connections down", active(n-2*n/3))
	testutil.WaitFor(t, "the other readers still parked", parked(n-2*n/3))

	// The server closes the rest, whose clients never read its close frame nor answer it:
	// the readers leave the parker, wait closeGrace for the answer, and tear down.
	env.eng.Clients(func(sc *Client) {
		sc.requestClose(protocol.CloseHeartbeat, "test", 0, DiscHeartbeat, false)
	})
	testutil.WaitFor(t, "the server's closes tore the last connections down", active(0))
	if p := env.eng.Snapshot().ParkedReaders; p != 0 {
		t.Fatalf("%d readers parked after every connection ended", p)
	}
}
