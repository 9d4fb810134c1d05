// Package testutil holds what the tests of every package share, so that none of them
// depends on the speed of the machine it runs on:
//
//   - WaitFor and Eventually poll a condition until it holds, with a deadline (Patience)
//     generous enough for a machine ten times slower than a quiet developer laptop. A
//     test waits for an event, never for a duration; how fast things happen is the
//     business of the benchmarks (cmd/realtime-bench), not of the tests.
//   - Logger sends a component's logs to the test's own output, shown only when the test
//     fails (or under -v); Discard drops them.
//   - FreePort and FreeAddr reserve a port on 127.0.0.1 for code that must know its
//     address before it listens.
//   - LeakOptions, SkipReexec and Encore allow for the differences of `encore test`'s
//     runtime (encore.go).
//
// Test code only.
package testutil
