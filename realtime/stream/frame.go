package stream

import (
	"bytes"
	"compress/flate"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"encore.app/realtime/protocol"
)

// frame is one complete WebSocket text message, framed once and shared by every
// connection it is queued to: the fan-out builds a channel's events frame once for all
// of its subscribers, and a control frame (a ping) is built once for every connection.
// It is immutable once built, except for its deflated form, which the first connection
// that needs it builds (once) for all the others: what gorilla/websocket's
// PreparedMessage does, possible because every connection negotiates
// permessage-deflate without context takeover (RFC 7692 section 7.1.1), so a
// compressed message does not depend on the messages before it.
//
// Server frames are not masked (RFC 6455 section 5.3), so the same bytes are valid on
// every connection.
type frame struct {
	wire []byte // header + payload, uncompressed
	hdr  int    // header length: the payload is wire[hdr:]

	// events frames only
	events   []*outEvent // in seq order
	first    uint64      // seq of events[0]
	last     uint64      // seq of the last event
	at       time.Time   // dispatch time of the oldest event (write-latency histogram)
	replayed bool        // recovered events, not live ones

	// a ping carrying a position: a lagging connection writes its events up to upTo
	// (from the replay window) before it (liveHead)
	upTo uint64

	deflate struct {
		once sync.Once
		wire []byte // header (RSV1 set) + deflated payload
	}

	// refs: the queues (and writers) holding the frame; while it is above 0 the frame's
	// bytes count once in the queue budget.
	refs atomic.Int32
}

// hold counts one more holder of f, and f's bytes in b if it is the first.
func (f *frame) hold(b *budget) {
	if f.refs.Add(1) == 1 {
		b.add(f.size())
	}
}

// release undoes one hold; the last one takes f's bytes out of b.
func (f *frame) release(b *budget) {
	if f.refs.Add(-1) == 0 {
		b.sub(f.size())
	}
}

// payload is the frame's message before compression.
func (f *frame) payload() []byte { return f.wire[f.hdr:] }

// size is what the frame counts against queue bounds and the global budget.
func (f *frame) size() int { return len(f.wire) }

// nEvents is the number of events the frame carries (0 for nil: none left to write).
func (f *frame) nEvents() int {
	if f == nil {
		return 0
	}
	return len(f.events)
}

// wireFor returns the bytes to write to a connection: the deflated form for one that
// negotiated permessage-deflate when the payload reaches threshold, the plain form
// otherwise. The deflated form is built on first use (counted in compressed);
// concurrent callers wait for it.
func (f *frame) wireFor(deflate bool, threshold int, compressed *atomic.Uint64) []byte {
	if !deflate || threshold < 0 || len(f.wire)-f.hdr < threshold {
		return f.wire
	}
	f.deflate.once.Do(func() {
		f.deflate.wire = deflateFrame(f.payload())
		compressed.Add(1)
	})
	if f.deflate.wire == nil {
		return f.wire // compression failed (never with bytes.Buffer): send it plain
	}
	return f.deflate.wire
}

// newTextFrame frames payload (copied) as one text message.
func newTextFrame(payload []byte) *frame {
	h := wsHeaderLen(len(payload))
	wire := make([]byte, h+len(payload))
	putWSHeader(wire[:h], len(payload), false)
	copy(wire[h:], payload)
	return &frame{wire: wire, hdr: h}
}

// newEventsFrame builds one events frame of evs (at least one, in seq order).
func newEventsFrame(evs []*outEvent, replayed bool) *frame {
	encs := encPool.Get().(*[][]byte)
	*encs = (*encs)[:0]
	n := 0
	for _, ev := range evs {
		*encs = append(*encs, ev.enc)
		n += len(ev.enc) + 1
	}
	// Build behind room for the largest header, then move the header next to the
	// payload: one allocation, no second copy of the events.
	buf := make([]byte, wsHeaderMax, wsHeaderMax+n+32)
	buf = protocol.AppendEventsFrame(buf, *encs)
	clear(*encs)
	encPool.Put(encs)
	pl := len(buf) - wsHeaderMax
	h := wsHeaderLen(pl)
	off := wsHeaderMax - h
	putWSHeader(buf[off:wsHeaderMax], pl, false)
	return &frame{wire: buf[off:], hdr: h, events: evs, first: evs[0].seq, last: evs[len(evs)-1].seq,
		at: evs[0].at, replayed: replayed}
}

// filterFrom returns f without its events of seq <= after (a connection that joined
// the channel, or resumed ahead of this instance, after f's first event); nil when
// nothing is left. f itself when nothing is removed.
func (f *frame) filterFrom(after uint64) *frame {
	if f.events == nil || f.first > after {
		return f
	}
	if f.last <= after {
		return nil
	}
	i := 0
	for i < len(f.events) && f.events[i].seq <= after {
		i++
	}
	return newEventsFrame(f.events[i:], f.replayed)
}

var encPool = sync.Pool{New: func() any { s := make([][]byte, 0, 128); return &s }}

// deflateFrame compresses payload as one permessage-deflate message without context
// takeover and returns it framed (RSV1 set), or nil on failure.
func deflateFrame(payload []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(wsHeaderMax + len(payload)/3 + 64)
	buf.Write(make([]byte, wsHeaderMax))
	fw := flateWriterPool.Get().(*flate.Writer)
	fw.Reset(&buf)
	_, err := fw.Write(payload)
	if err == nil {
		err = fw.Flush() // sync flush: ends with 0x00 0x00 0xff 0xff
	}
	flateWriterPool.Put(fw)
	b := buf.Bytes()
	if err != nil || len(b) < wsHeaderMax+4 {
		return nil
	}
	b = b[:len(b)-4] // RFC 7692 7.2.1: remove the sync flush's empty block trailer
	pl := len(b) - wsHeaderMax
	h := wsHeaderLen(pl)
	off := wsHeaderMax - h
	putWSHeader(b[off:wsHeaderMax], pl, true)
	return b[off:]
}

// flateWriterPool holds compressors (each ~1 MB of state) for deflateFrame: a few are
// enough for all connections, since a frame is compressed once for all of them.
var flateWriterPool = sync.Pool{New: func() any {
	fw, _ := flate.NewWriter(nil, flate.BestSpeed)
	return fw
}}

// Frames are framed without the WebSocket library (RFC 6455 section 5.2). The library
// still writes its own control frames (pongs, and the close frames of refused
// upgrades); they reach the socket through the connection's output queue at frame
// boundaries (socket.go).

// wsHeaderMax is the largest server frame header: 2 bytes + 8-byte length.
const wsHeaderMax = 10

// wsHeaderLen is the header size of a server frame with an n-byte payload.
func wsHeaderLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xffff:
		return 4
	default:
		return 10
	}
}

// putWSHeader writes the header of a final, unmasked text frame with an n-byte payload
// into dst, which must be exactly wsHeaderLen(n) bytes; compressed sets RSV1.
func putWSHeader(dst []byte, n int, compressed bool) {
	dst[0] = 0x80 | 0x1 // FIN, text
	if compressed {
		dst[0] |= 0x40 // RSV1: permessage-deflate
	}
	switch len(dst) {
	case 2:
		dst[1] = byte(n)
	case 4:
		dst[1] = 126
		binary.BigEndian.PutUint16(dst[2:], uint16(n))
	default:
		dst[1] = 127
		binary.BigEndian.PutUint64(dst[2:], uint64(n))
	}
}

// closeFrame is a close frame with code and reason (at most 123 bytes).
func closeFrame(code protocol.CloseCode, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	b := make([]byte, 4+len(reason))
	b[0] = 0x80 | 0x8 // FIN, close
	b[1] = byte(2 + len(reason))
	binary.BigEndian.PutUint16(b[2:], uint16(code))
	copy(b[4:], reason)
	return b
}
