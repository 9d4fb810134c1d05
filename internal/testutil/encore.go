package testutil

import (
	"testing"

	"go.uber.org/goleak"
)

// The test binaries `encore test` builds carry the build tag "encore" and Encore's
// runtime, which differs from plain `go test` in three ways the tests must allow for
// (and only there; encore_on.go and encore_off.go set what differs):
//
//   - it uploads each test's trace to the daemon with http.DefaultClient, whose
//     keep-alive connection goleak sees as two leaked goroutines;
//   - it unsets every ENCORE_* variable at start-up, so a test binary re-executed as a
//     child process dies with "no encore runtime or infra config provided";
//   - it records every HTTP round trip of a test in the trace, so heap growth is not a
//     property of the code under test.
//
// `encore test -race` crashes in the runtime (encoredev/encore#1943): race runs use
// plain `go test -race`.

// LeakOptions are the goleak options of the project's tests: extra, plus under
// `encore test` an ignore of the runtime's trace-upload connection.
func LeakOptions(extra ...goleak.Option) []goleak.Option {
	return append(extra, encoreLeakOptions...)
}

// SkipReexec skips a test that re-executes its own binary as a child process (a
// server to kill): under `encore test` the child cannot start.
func SkipReexec(t testing.TB) {
	t.Helper()
	if Encore {
		t.Skip("under encore test a re-executed test binary has no Encore runtime config (the runtime unsets ENCORE_*); go test runs this test")
	}
}
