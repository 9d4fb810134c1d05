//go:build !linux

package stream

import (
	"errors"
	"syscall"
)

// newParker: without epoll, a connection whose socket does not take a write at once is
// handed to its slow path (a goroutine that finishes the write, see Client.slowFlush).
func newParker() (parker, error) { return nil, errors.New("stream: no poller on this system") }

// newReadParker: without epoll, every connection's reader waits on a goroutine of its own.
func newReadParker() (parker, error) { return nil, errors.New("stream: no poller on this system") }

// peerLags: how the peer keeps up is not known here (no TCP_INFO).
func peerLags(syscall.RawConn, int) (bool, error) { return false, errors.ErrUnsupported }
