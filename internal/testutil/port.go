package testutil

import (
	"net"
	"strconv"
	"testing"
)

// FreePort returns a port on 127.0.0.1 that was free a moment ago (it listens and
// closes). For code that must know its ports before anything listens, such as a NATS
// cluster whose nodes route to each other, or a server restarted on the same port.
// Anything else listens on 127.0.0.1:0 and asks the listener.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// FreeAddr is FreePort as "127.0.0.1:port".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}
