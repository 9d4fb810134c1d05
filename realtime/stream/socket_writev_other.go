//go:build !(darwin || linux || openbsd)

package stream

import "syscall"

// haveWritev: no writev(2) here; sockets are written by blocking writes off the
// flusher's workers (see sock.writevBlocking).
const haveWritev = false

func writev(int, [][]byte) (int, error) { return 0, syscall.ENOSYS }
