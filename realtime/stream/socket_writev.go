//go:build darwin || linux || openbsd

package stream

import "golang.org/x/sys/unix"

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
