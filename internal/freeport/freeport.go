// Package freeport picks a loopback TCP port for a server that must know its port
// before it listens, or that is restarted on the same port (a NATS cluster's nodes,
// a Postgres restarted by a test, a server spawned by the benchmark).
//
// A port the kernel hands out for 127.0.0.1:0 is in the ephemeral range
// (net.ipv4.ip_local_port_range), which is also where the source ports of outgoing
// connections come from: once the server stops, any connection of the machine may
// take its port as a source port, and the restart fails to listen. So Pick chooses
// below that range, at random, where only listeners that name their port go, and
// checks that it is free. When the ephemeral range starts too low to leave room, it
// falls back to asking the kernel.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// Below the ephemeral range: [lo-span, lo), never under floor.
const (
	span  = 12000
	floor = 10000
)

// Pick returns a port on 127.0.0.1 that was free a moment ago.
func Pick() (int, error) {
	lo := ephemeralLow()
	if lo-span >= floor {
		for range 64 {
			p := lo - span + rand.IntN(span)
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				continue // taken: another one
			}
			l.Close()
			return p, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux), or 0 when
// it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return n
}
