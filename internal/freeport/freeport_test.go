package freeport

import (
	"net"
	"strconv"
	"testing"
)

// A picked port is below the ephemeral range (where one exists with room) and free.
func TestPick(t *testing.T) {
	p, err := Pick()
	if err != nil {
		t.Fatal(err)
	}
	if lo := ephemeralLow(); lo-span >= floor && (p < lo-span || p >= lo) {
		t.Fatalf("port %d outside [%d, %d)", p, lo-span, lo)
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatalf("port %d is not free: %v", p, err)
	}
	l.Close()
}
