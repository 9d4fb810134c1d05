package stream

import (
	"encoding/binary"
	"time"
)

// Frames that are not compressed are written without the WebSocket library: the
// writer puts the frame header (RFC 6455 section 5.2; server frames are not masked) in
// front of the payload it built, and the whole frame goes to the socket in one write.
// That skips the library's channel-based write locks, its buffered copy and the
// gathering copy, which cost about as much as the system call on a busy instance.
//
// It is safe because every write reaches the socket whole: a raw frame is one Write
// on countingConn, under its lock, and the library's own frames (pong, close, and the
// compressed data frames of the writer) each reach it in one Write too: control
// frames fit its write buffer and are flushed at once, data frames are corked. Frames
// can therefore only interleave at frame boundaries.

// wsHeaderMax is the largest server frame header: 2 bytes + 8-byte length.
const wsHeaderMax = 10

// wsHeaderLen is the header size of a server text frame with an n-byte payload.
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
// into dst, which must be exactly wsHeaderLen(n) bytes.
func putWSHeader(dst []byte, n int) {
	dst[0] = 0x80 | 0x1 // FIN, text
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

// rawOK reports whether a payload of n bytes is sent uncompressed (so it may be
// written raw): the connection did not negotiate permessage-deflate, or the frame is
// under the compression threshold (the library's own rule).
func (c *Client) rawOK(n int) bool {
	return !c.deflate || n < c.e.cfg.CompressionThreshold
}

// writeRaw writes buf, a frame whose payload starts at off (buf[:off] is free room of
// at least wsHeaderMax bytes), as one raw frame.
func (c *Client) writeRaw(buf []byte, off int) error {
	n := len(buf) - off
	h := wsHeaderLen(n)
	putWSHeader(buf[off-h:off], n)
	return c.cc.writeAll(buf[off-h:], time.Now().Add(c.e.cfg.WriteTimeout))
}
