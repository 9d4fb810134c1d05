//go:build !linux

package stream

import "errors"

// newParker: without epoll, a connection whose socket does not take a write at once is
// handed to its slow path (a goroutine that finishes the write, see Client.slowFlush).
func newParker() (parker, error) { return nil, errors.New("stream: no poller on this system") }
