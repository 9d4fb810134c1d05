//go:build !(darwin || linux || openbsd)

package stream

import "syscall"

// haveWritev: no writev(2) here; sockets are written by blocking writes off the
// flusher's workers (see sock.writevBlocking).
const haveWritev = false

func writev(int, [][]byte) (int, error) { return 0, syscall.ENOSYS }

// peekReady is never asked here: without raw socket access (haveWritev false) readyNow
// and waitReadable do not look at the socket.
func peekReady(uintptr) bool { return true }
