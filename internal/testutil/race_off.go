//go:build !race

package testutil

// RaceEnabled reports whether the binary was built with -race, which makes code (the
// in-process nats-servers included) several times slower: a load test may size its load
// by it, never its expectations.
const RaceEnabled = false
