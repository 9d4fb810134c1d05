package stream

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Per-connection socket buffer sizes (see countingWriter.Hijack). The write buffer
// only carries the WebSocket library's control frames (at most 125 bytes of payload)
// and the upgrade response: the writer frames and writes everything else itself.
const (
	connReadBuffer  = 256 // client frames are small (pings, pongs, subscribes); larger reads bypass it
	connWriteBuffer = 256 // at least a whole control frame (125 bytes of payload and its header)
)

// countingWriter wraps the upgrade's ResponseWriter so that the hijacked connection
// is a *sock: it counts the bytes that really cross the socket (after compression,
// with framing) and gives the writer non-blocking writes.
type countingWriter struct {
	http.ResponseWriter
	m       *Metrics
	timeout time.Duration // bound of a direct write (the upgrade response)
	sndbuf  int           // most the socket's SO_SNDBUF grows to (< 0: the kernel's autotuning)
	s       *sock         // set by Hijack
}

func (cw *countingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := cw.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("stream: response writer cannot hijack")
	}
	nc, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	s := newSock(nc, cw.m, cw.timeout, cw.sndbuf)
	cw.s = s
	// Small buffers instead of net/http's 4 KiB pair: an idle connection keeps them for
	// its whole life. Bytes the server already read past the request (the client's
	// first frames, when it sent them as soon as the 101 left) stay first in line: the
	// socket's own Read returns them first. Not a reader in front of the socket: the
	// WebSocket library resets the reader it is given to one over the socket (Accept),
	// which would skip them.
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		s.early = bytes.NewReader(bytes.Clone(early))
	}
	s.br = bufio.NewReaderSize(s, connReadBuffer)
	return s, bufio.NewReadWriter(s.br, bufio.NewWriterSize(s, connWriteBuffer)), nil
}

// sock is the hijacked socket of one stream connection.
//
// Until attach, writes (the upgrade response, the close of a refused connection) go
// straight to the socket, bounded by timeout. After attach, the WebSocket library's
// writes (pongs, its close frame) are handed to the Client's output queue, which the
// connection's writer sends at frame boundaries with its own frames: one writer per
// socket, so no frame is ever interleaved with another, and no library call blocks on
// a socket that does not drain.
//
// The writer writes with tryWritev, which never blocks: what the socket does not take
// now stays queued, and the writer is parked until the socket is writable (park.go).
// writevBlocking, used off the flusher's workers (replays, and sockets without
// non-blocking access such as TLS), waits, bounded by a deadline.
type sock struct {
	net.Conn
	wire, read *atomic.Uint64
	timeout    time.Duration

	// immutable after newSock
	raw syscall.RawConn // nil: no non-blocking writes (not a socket, or TLS)
	tcp *net.TCPConn    // nil when not TCP

	// owned by the connection's writer: the socket's send buffer (SO_SNDBUF) now, the
	// most it may grow to (0: left to the kernel), and the bytes written since it last
	// grew
	sndbuf, sndbufMax, sinceGrow int
	// slowPeer: the peer does not keep up (lookBehind); set by the writer, read by
	// whoever schedules it (the flusher's slow lane). lagSince and lagPeriod, owned by
	// the writer: the bytes written since the peer was last looked at, and after how
	// many it is looked at again.
	slowPeer            atomic.Bool
	lagSince, lagPeriod int

	// the library's read buffer (set by Hijack) and the bytes read before the upgrade
	// that it reads first (nil when there were none); see waitReadable
	br    *bufio.Reader
	early *bytes.Reader

	mu    sync.Mutex
	owner *Client // set by attach
}

// sndbufStart is a stream socket's first send buffer (Linux doubles it): a socket that
// never drains keeps little kernel memory; one that does doubles it (grow).
const sndbufStart = 8 << 10

func newSock(nc net.Conn, m *Metrics, timeout time.Duration, sndbufMax int) *sock {
	s := &sock{Conn: nc, wire: &m.bytesWire, read: &m.bytesRead, timeout: timeout}
	if tc, ok := nc.(*net.TCPConn); ok {
		s.tcp = tc
		if rc, err := tc.SyscallConn(); err == nil && haveWritev {
			s.raw = rc
		}
		if sndbufMax > 0 {
			s.sndbuf, s.sndbufMax = min(sndbufStart, sndbufMax), sndbufMax
			_ = tc.SetWriteBuffer(s.sndbuf)
		}
	}
	return s
}

// grow doubles the send buffer of a socket that filled its buffer and drained it (it
// was parked and became writable) and took four buffers' worth (the kernel's buffer is
// twice the figure) since the last time, up to its bound: the buffer follows what the
// path carries. A socket whose peer does not read also reports writable once, when the
// data in flight is acknowledged; the first fill does not count. Writer only.
func (s *sock) grow() {
	if s.sndbuf == 0 || s.sndbuf >= s.sndbufMax || s.sinceGrow < 4*s.sndbuf {
		return
	}
	s.sndbuf, s.sinceGrow = min(2*s.sndbuf, s.sndbufMax), 0
	_ = s.tcp.SetWriteBuffer(s.sndbuf)
}

// Looks at how a socket's peer keeps up: at its first write, then after lagPeriodMin
// bytes, then after twice as many each time the peer kept up, up to lagPeriodMax. A
// new connection (and one that fell behind) is looked at after its first frames; one
// that keeps up costs one getsockopt per lagPeriodMax bytes.
const (
	lagPeriodMin = 2 << 10
	lagPeriodMax = 64 << 10
	// lagWindow: a peer that advertises a receive window smaller than this does not
	// read what it was sent (or cannot take 2 KB events at any useful rate).
	lagWindow = 16 << 10
)

// lookBehind sets slowPeer after a write of n bytes that the socket took whole: the
// peer does not keep up when the kernel holds bytes it could not send yet, or the
// peer's receive window is under lagWindow (TCP_INFO). A peer that reads has neither:
// its window stays open. One that stopped reading shows a small window before the
// kernel holds anything for it. The peer is looked at now and then (lagPeriodMin);
// slowPeer is stored only when it changes. Writer only.
func (s *sock) lookBehind(n int) {
	if s.raw == nil {
		return
	}
	s.lagSince += n
	if s.lagSince < s.lagPeriod {
		return
	}
	s.lagSince = 0
	lag, err := peerLags(s.raw, lagWindow)
	switch {
	case err != nil: // not known here: never behind, and seldom asked again
		lag, s.lagPeriod = false, lagPeriodNever
	case lag:
		s.lagPeriod = lagPeriodMin
	default:
		s.lagPeriod = max(lagPeriodMin, min(2*s.lagPeriod, lagPeriodMax))
	}
	if s.slowPeer.Load() != lag {
		s.slowPeer.Store(lag)
	}
}

// lagPeriodNever: where the peer cannot be looked at, it is not looked at again.
const lagPeriodNever = 1 << 30

// filled records that the socket did not take a whole write: the peer is slow until a
// look after its next lagPeriodMin bytes says otherwise. Writer only.
func (s *sock) filled() {
	s.slowPeer.Store(true)
	s.lagSince, s.lagPeriod = 0, lagPeriodMin
}

// attach routes the library's writes to c's output queue from now on.
func (s *sock) attach(c *Client) {
	s.mu.Lock()
	s.owner = c
	s.mu.Unlock()
	_ = s.Conn.SetWriteDeadline(time.Time{}) // tryWritev must not find an expired deadline
}

// Write is the WebSocket library's write.
func (s *sock) Write(p []byte) (int, error) {
	s.mu.Lock()
	c := s.owner
	s.mu.Unlock()
	if c != nil {
		return c.libraryWrite(p)
	}
	var deadline time.Time
	if s.timeout > 0 {
		deadline = time.Now().Add(s.timeout)
	}
	_ = s.Conn.SetWriteDeadline(deadline)
	n, err := s.Conn.Write(p)
	s.wire.Add(uint64(n))
	return n, err
}

// Close is the WebSocket library's close of the socket. After attach, one that comes
// while the writer still holds frames for the socket (the library's answer to the
// client's close frame) is done by the writer once they are written.
func (s *sock) Close() error {
	s.mu.Lock()
	c := s.owner
	s.mu.Unlock()
	if c != nil && c.deferSocketClose() {
		return nil
	}
	return s.closeConn()
}

// closeConn closes the socket and wakes its connection's reader if it is parked:
// closing removes the socket from the read parker's set, which would never report it.
func (s *sock) closeConn() error {
	err := s.Conn.Close()
	s.mu.Lock()
	c := s.owner
	s.mu.Unlock()
	if c != nil {
		c.wakeReader()
	}
	return err
}

// readyNow reports whether the library's next read finds data without waiting: its
// buffer holds some, or the socket is readable, at its end, or failed (the read then
// reports it). Sockets without raw access (TLS, tests' pipes) say yes: their reader
// waits inside the library's read. The reader asks it between messages, before it
// parks (reader.go).
func (s *sock) readyNow() bool {
	if s.raw == nil || s.buffered() {
		return true
	}
	ready := true
	_ = s.raw.Control(func(fd uintptr) { ready = peekReady(fd) })
	return ready
}

// buffered: the library's next read finds bytes already read from the socket.
func (s *sock) buffered() bool {
	return (s.br != nil && s.br.Buffered() > 0) || (s.early != nil && s.early.Len() > 0)
}

// waitReadable waits until the library's next read finds data (as readyNow says), or
// the socket's read deadline passes, so that a reader that cannot park waits here, a
// few frames deep, and not deep inside the library's frame-header read.
func (s *sock) waitReadable() {
	if s.raw == nil || s.buffered() {
		return
	}
	_ = s.raw.Read(peekReady) // false: not readable yet, the runtime waits for it
}

// Read is the WebSocket library's read: the bytes read before the upgrade first, then
// the socket's. Reader only.
func (s *sock) Read(p []byte) (int, error) {
	if s.early != nil {
		if s.early.Len() > 0 {
			n, _ := s.early.Read(p)
			s.read.Add(uint64(n))
			return n, nil
		}
		s.early = nil
	}
	n, err := s.Conn.Read(p)
	s.read.Add(uint64(n))
	return n, err
}

// errWouldBlock: the socket took only part of a write; the rest must wait until it is
// writable.
var errWouldBlock = errors.New("stream: socket would block")

// errNoNonBlocking: the socket offers no non-blocking writes.
var errNoNonBlocking = errors.New("stream: socket has no non-blocking writes")

// nonBlocking reports whether tryWritev can be used.
func (s *sock) nonBlocking() bool { return s.raw != nil }

// tryWritev writes as much of bufs as the socket takes now, without waiting, and
// returns how many bytes it wrote: errWouldBlock when that was not all of them.
func (s *sock) tryWritev(bufs [][]byte) (int, error) {
	if s.raw == nil {
		return 0, errNoNonBlocking
	}
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	written := 0
	for len(bufs) > 0 {
		var n int
		var werr error
		err := s.raw.Write(func(fd uintptr) bool {
			n, werr = writev(int(fd), bufs)
			return true // never wait here: the caller parks instead
		})
		if err != nil {
			return written, err
		}
		if n > 0 {
			written += n
			s.wire.Add(uint64(n))
			s.sinceGrow += n
			bufs = consumeBufs(bufs, n)
		}
		switch {
		case werr == syscall.EINTR:
			continue
		case werr == syscall.EAGAIN:
			return written, errWouldBlock
		case werr != nil:
			return written, &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("writev", werr)}
		}
		if n == 0 && written < total {
			return written, errWouldBlock
		}
	}
	return written, nil
}

// writevBlocking writes all of bufs, waiting for the socket as needed; it fails when
// the socket accepts nothing for timeout. Only the connection's writer may call it,
// never on a flusher worker.
func (s *sock) writevBlocking(bufs [][]byte, timeout time.Duration) (int, error) {
	written := 0
	defer func() { _ = s.Conn.SetWriteDeadline(time.Time{}) }()
	for len(bufs) > 0 {
		if timeout > 0 {
			_ = s.Conn.SetWriteDeadline(time.Now().Add(timeout))
		}
		var n int
		var err error
		if s.raw != nil {
			var werr error
			err = s.raw.Write(func(fd uintptr) bool {
				n, werr = writev(int(fd), bufs)
				if werr == syscall.EAGAIN || werr == syscall.EINTR {
					return n > 0 // some progress: return and renew the deadline
				}
				return true
			})
			if err == nil && werr != nil && werr != syscall.EAGAIN && werr != syscall.EINTR {
				err = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("writev", werr)}
			}
			if n < 0 {
				n = 0
			}
		} else {
			nb := net.Buffers(bufs)
			var n64 int64
			n64, err = nb.WriteTo(s.Conn)
			n = int(n64)
		}
		if n > 0 {
			written += n
			s.wire.Add(uint64(n))
			s.sinceGrow += n
			bufs = consumeBufs(bufs, n)
		}
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// sealWrites ends the write side (FIN after what was written), when the socket can.
func (s *sock) sealWrites() bool {
	if s.tcp == nil {
		return false
	}
	return s.tcp.CloseWrite() == nil
}

// resetOnClose makes the next Close discard unsent data and send a reset, which frees
// the kernel's buffers of a socket that does not drain at once (a FIN queued behind
// unsent data would otherwise keep them, and the peer would never see it).
func (s *sock) resetOnClose() {
	if s.tcp != nil {
		_ = s.tcp.SetLinger(0)
	}
}

// consumeBufs drops the first n bytes of bufs (without modifying the slices' contents).
func consumeBufs(bufs [][]byte, n int) [][]byte {
	for n > 0 && len(bufs) > 0 {
		if n < len(bufs[0]) {
			bufs[0] = bufs[0][n:]
			return bufs
		}
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	for len(bufs) > 0 && len(bufs[0]) == 0 {
		bufs = bufs[1:]
	}
	return bufs
}
