package stream

import (
	"bytes"
	"compress/flate"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encore.app/internal/testutil"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// parseServerFrame reads one unmasked server frame: its flags and payload.
func parseServerFrame(t *testing.T, b []byte) (fin, rsv1 bool, op byte, payload []byte) {
	t.Helper()
	if len(b) < 2 || b[1]&0x80 != 0 {
		t.Fatalf("bad header % x", b[:min(len(b), 2)])
	}
	n, h := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		n, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
		if n < 126 {
			t.Fatalf("16-bit length %d for a 7-bit payload", n)
		}
	case 127:
		n, h = binary.BigEndian.Uint64(b[2:]), 10
		if n <= 0xffff {
			t.Fatalf("64-bit length %d for a 16-bit payload", n)
		}
	}
	if uint64(len(b)-h) != n {
		t.Fatalf("header says %d payload bytes, frame has %d", n, len(b)-h)
	}
	return b[0]&0x80 != 0, b[0]&0x40 != 0, b[0] & 0x0f, b[h:]
}

// inflate decodes a permessage-deflate payload (RFC 7692 7.2.2: append the trailer).
func inflate(t *testing.T, p []byte) []byte {
	t.Helper()
	r := flate.NewReader(io.MultiReader(bytes.NewReader(p), bytes.NewReader([]byte{0, 0, 0xff, 0xff})))
	out, err := io.ReadAll(r)
	if err != nil && err != io.ErrUnexpectedEOF {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

// Frames of every header size, plain and deflated (compressed once, for every client):
// the headers are minimal and exact, the compressed payload inflates to the original.
func TestFrameEncoding(t *testing.T) {
	random := func(n int) []byte {
		b := make([]byte, (n+1)/2)
		_, _ = rand.Read(b)
		return []byte(hex.EncodeToString(b)[:n])
	}
	cases := []struct {
		name    string
		payload []byte
	}{
		{"empty", nil},
		{"7-bit", []byte(`{"type":"pong"}`)},
		{"7-bit edge", bytes.Repeat([]byte("a"), 125)},
		{"16-bit edge", bytes.Repeat([]byte("a"), 126)},
		{"16-bit max", random(0xffff)},
		{"64-bit", random(0x10000)},
		{"64-bit compressible", bytes.Repeat([]byte(`{"sku":"SKU-10037","qty":3},`), 10000)},
		{"64-bit after compression", random(300 << 10)},
	}
	var compressed atomic.Uint64
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newTextFrame(tc.payload)
			fin, rsv1, op, p := parseServerFrame(t, f.wire)
			if !fin || rsv1 || op != 1 || !bytes.Equal(p, tc.payload) {
				t.Fatalf("plain frame: fin %v rsv1 %v op %d, payload equal %v", fin, rsv1, op, bytes.Equal(p, tc.payload))
			}
			if got := f.wireFor(false, 0, &compressed); &got[0] != &f.wire[0] {
				t.Fatal("a plain client got another buffer than the shared frame")
			}
			before := compressed.Load()
			var wg sync.WaitGroup
			wires := make([][]byte, 8)
			for i := range wires { // many clients at once: one compression
				wg.Add(1)
				go func() { defer wg.Done(); wires[i] = f.wireFor(true, 0, &compressed) }()
			}
			wg.Wait()
			if n := compressed.Load() - before; n != 1 {
				t.Fatalf("compressed %d times for 8 clients", n)
			}
			for _, w := range wires[1:] {
				if &w[0] != &wires[0][0] {
					t.Fatal("clients got different compressed buffers")
				}
			}
			fin, rsv1, op, p = parseServerFrame(t, wires[0])
			if !fin || !rsv1 || op != 1 {
				t.Fatalf("compressed frame: fin %v rsv1 %v op %d", fin, rsv1, op)
			}
			if got := inflate(t, p); !bytes.Equal(got, tc.payload) {
				t.Fatalf("inflated %d bytes, want %d", len(got), len(tc.payload))
			}
			if got := f.wireFor(true, len(tc.payload)+1, &compressed); &got[0] != &f.wire[0] {
				t.Fatal("a frame under the threshold was compressed")
			}
		})
	}
}

// Many clients on one channel, most compressing: every client decodes every event intact
// (frames with 7-, 16- and 64-bit lengths after compression), and each frame was
// compressed once for all of them.
func TestSharedCompressionManyClients(t *testing.T) {
	env := newEnv(t, Config{BatchWindow: 20 * time.Millisecond, BatchWindowMax: 20 * time.Millisecond}, bus.Config{})
	ctx := testutil.Context(t)
	const deflating, plain = 24, 8
	var conns []*rtclient.Conn
	for i := range deflating + plain {
		c := env.dial(ctx, &rtclient.DialOptions{Compression: i < deflating})
		subscribe(t, ctx, c, nil, "zc")
		conns = append(conns, c)
	}
	hexdata := func(n int) string {
		b := make([]byte, n/2)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}
	var evs []*protocol.Event
	add := func(data string) {
		evs = append(evs, &protocol.Event{ID: fmt.Sprintf("zc-%d", len(evs)), Channel: "zc", Data: []byte(`"` + data + `"`)})
	}
	add("small")                   // under the threshold: sent plain to everyone
	add(strings.Repeat("a", 2000)) // compresses to a 7-bit length
	add(hexdata(4000))             // 16-bit
	for range 100 {                // one frame of ~200 KB, ~110 KB compressed: 64-bit
		add(hexdata(2000))
	}
	before := env.eng.Snapshot()
	env.publish(evs[0])
	env.publish(evs[1])
	env.publish(evs[2])
	env.publish(evs[3:]...)
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, _ := readEvents(t, ctx, c, len(evs))
			for k, ev := range got {
				if ev.ID != evs[k].ID || !bytes.Equal(ev.Data, evs[k].Data) {
					t.Errorf("client %d, event %d: id %s with %d data bytes, want %s with %d", i, k, ev.ID, len(ev.Data), evs[k].ID, len(evs[k].Data))
					return
				}
			}
		}()
	}
	wg.Wait()
	s := env.eng.Snapshot()
	frames := s.EventFrames - before.EventFrames
	compressed := s.FramesCompressed - before.FramesCompressed
	if compressed == 0 || compressed*deflating > frames {
		t.Errorf("%d compressions for %d frames written to %d compressing clients: not shared", compressed, frames, deflating)
	}
	t.Logf("%d frames written, %d compressed", frames, compressed)
}

// Small events frames that queued up while a connection waited for a writer are merged
// (up to mergeBytes and BatchMaxEvents), keeping their accounting; not for a client that
// compresses (it keeps the shared compressed frames) or whose socket is slow.
func TestWriterMergesSmallFrames(t *testing.T) {
	e, err := New(Config{Logger: testutil.Logger(t), BatchMaxEvents: 100}, stubBus{})
	if err != nil {
		t.Fatal(err)
	}
	var take []item
	size := 0
	for i := range 40 {
		ev := &outEvent{seq: uint64(i + 1), channel: "m", enc: []byte(fmt.Sprintf(`{"seq":%d,"data":"%s"}`, i+1, strings.Repeat("x", 300)))}
		fr := newEventsFrame([]*outEvent{ev}, false)
		size += fr.size()
		take = append(take, item{fr: fr})
	}
	for _, tc := range []struct {
		name          string
		deflate, slow bool
		wantMerged    bool
	}{
		{"plain", false, false, true},
		{"compressing", true, false, false},
		{"slow socket", false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Client{e: e, deflate: tc.deflate, slowSocket: tc.slow}
			c.appendTaken(take)
			sum, events, seq := 0, 0, uint64(0)
			for _, s := range c.out {
				sum += s.size
				events += s.events
				if len(s.fr.payload()) > mergeBytes || s.fr.nEvents() > 100 || s.wrote != s.fr.nEvents() {
					t.Fatalf("frame of %d bytes, %d events (%d counted as written)", len(s.fr.payload()), s.fr.nEvents(), s.wrote)
				}
				for _, ev := range s.fr.events {
					if ev.seq != seq+1 {
						t.Fatalf("seq %d after %d", ev.seq, seq)
					}
					seq = ev.seq
				}
			}
			if sum != size || events != 40 || seq != 40 {
				t.Fatalf("segments count %d bytes and %d events, want %d and 40", sum, events, size)
			}
			if merged := len(c.out) < 40; merged != tc.wantMerged {
				t.Fatalf("%d segments for 40 frames", len(c.out))
			}
		})
	}
}
