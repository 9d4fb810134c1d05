//go:build darwin || linux || openbsd

package stream

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// haveWritev: sockets can be written with writev(2) through syscall.RawConn.
const haveWritev = true

// writev is one writev(2) of bufs on fd (non-blocking: the runtime's sockets are).
func writev(fd int, bufs [][]byte) (int, error) {
	if len(bufs) > maxIovecs {
		bufs = bufs[:maxIovecs]
	}
	n, err := unix.Writev(fd, bufs)
	if n < 0 {
		n = 0
	}
	return n, err
}

// maxIovecs bounds the buffers of one writev (IOV_MAX is 1024 on these systems).
const maxIovecs = 1024

// peekReady looks at the socket without consuming or waiting: true when it holds data,
// is at its end, or failed (the library's read then reports it).
func peekReady(fd uintptr) bool {
	var peek [1]byte
	_, _, err := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN
}
