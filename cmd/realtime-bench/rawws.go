package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// rawConn is a minimal RFC 6455 client for the bench's uncompressed connections: one
// bufio.Reader over the socket, frames parsed in place (a frame that fits the buffer is
// handed to the caller without a copy), so that reading 5,000 sockets costs little
// more than the read system calls. Compressed runs use github.com/coder/websocket.
// Not a general client: no extensions, text/binary messages, pings answered.
type rawConn struct {
	nc  net.Conn
	br  *bufio.Reader
	wmu sync.Mutex // guards writes (pong answers vs close)
	msg []byte     // reassembly of fragmented messages
}

var bigPool = sync.Pool{New: func() any { return new([]byte) }}

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// errClosed is returned by next after a close frame.
type errClosed struct{ code int }

func (e errClosed) Error() string { return fmt.Sprintf("websocket closed with %d", e.code) }

func rawDial(ctx context.Context, wsURL string, bufSize int) (*rawConn, error) {
	return rawDialWith(ctx, &net.Dialer{}, wsURL, bufSize)
}

// rawDialWith is rawDial with a dialer (socket options).
func rawDialWith(ctx context.Context, d *net.Dialer, wsURL string, bufSize int) (*rawConn, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "ws" {
		return nil, fmt.Errorf("raw client speaks ws:// only, not %s", u.Scheme)
	}
	nc, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(nc, bufSize)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		nc.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, fmt.Errorf("upgrade: HTTP %d", resp.StatusCode)
	}
	h := sha1.Sum([]byte(key + wsGUID))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(h[:]) {
		nc.Close()
		return nil, errors.New("upgrade: bad Sec-WebSocket-Accept")
	}
	_ = nc.SetDeadline(time.Time{})
	return &rawConn{nc: nc, br: br}, nil
}

// next reads the next data message and calls fn with it; b is valid only during fn.
// Control frames are handled inside (ping answered, close returned as errClosed).
func (c *rawConn) next(fn func(b []byte)) error {
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
			return err
		}
		fin, op := hdr[0]&0x80 != 0, hdr[0]&0x0f
		if hdr[1]&0x80 != 0 {
			return errors.New("masked frame from server")
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(c.br, e[:]); err != nil {
				return err
			}
			n = uint64(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(c.br, e[:]); err != nil {
				return err
			}
			n = binary.BigEndian.Uint64(e[:])
		}
		if n > 64<<20 {
			return fmt.Errorf("frame of %d bytes", n)
		}
		if op >= 8 { // control: close, ping, pong (at most 125 bytes)
			p := make([]byte, n)
			if _, err := io.ReadFull(c.br, p); err != nil {
				return err
			}
			switch op {
			case 8:
				code := 1005
				if len(p) >= 2 {
					code = int(binary.BigEndian.Uint16(p))
				}
				_ = c.writeFrame(8, p[:min(len(p), 2)])
				return errClosed{code}
			case 9:
				_ = c.writeFrame(10, p)
			}
			continue
		}
		if fin && op != 0 && len(c.msg) == 0 {
			// Whole message in one frame: hand out the buffer in place when it fits.
			if int(n) <= c.br.Size() {
				b, err := c.br.Peek(int(n))
				if err != nil {
					return err
				}
				fn(b)
				_, _ = c.br.Discard(int(n))
				return nil
			}
			buf := bigPool.Get().(*[]byte)
			*buf = append((*buf)[:0], make([]byte, n)...)
			if _, err := io.ReadFull(c.br, *buf); err != nil {
				return err
			}
			fn(*buf)
			if cap(*buf) <= 1<<20 {
				bigPool.Put(buf)
			}
			return nil
		}
		start := len(c.msg)
		c.msg = append(c.msg, make([]byte, n)...)
		if _, err := io.ReadFull(c.br, c.msg[start:]); err != nil {
			return err
		}
		if fin {
			fn(c.msg)
			c.msg = c.msg[:0]
			return nil
		}
	}
}

// writeFrame sends one masked frame (payload < 64 KiB).
func (c *rawConn) writeFrame(op byte, p []byte) error {
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	b := make([]byte, 0, 8+len(p))
	b = append(b, 0x80|op)
	if len(p) < 126 {
		b = append(b, 0x80|byte(len(p)))
	} else {
		b = append(b, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	b = append(b, mask[:]...)
	for i, x := range p {
		b = append(b, x^mask[i%4])
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := c.nc.Write(b)
	return err
}

func (c *rawConn) writeText(p []byte) error { return c.writeFrame(1, p) }

// close sends a normal close frame and closes the socket once the server answers (the
// reader sees the close) or after 2s.
func (c *rawConn) closeNormal() {
	_ = c.writeFrame(8, []byte{0x03, 0xe8})
}

func (c *rawConn) closeNow() { _ = c.nc.Close() }
