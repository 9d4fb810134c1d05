package testutil

import (
	"net"
	"strconv"
	"testing"

	"encore.app/internal/freeport"
)

// FreePort returns a port on 127.0.0.1 that was free a moment ago (it listens and
// closes). For code that must know its ports before anything listens, such as a NATS
// cluster whose nodes route to each other, or a server restarted on the same port.
// Anything else listens on 127.0.0.1:0 and asks the listener.
// It is chosen below the kernel's ephemeral range (internal/freeport), so that no
// outgoing connection takes it as its source port while its server is down.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freeport.Pick()
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	return p
}

// FreeAddr is FreePort as "127.0.0.1:port".
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}
