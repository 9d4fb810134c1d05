package testutil

import (
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
)

// Logger returns a logger whose records (Info and above) go to t's output: shown when
// the test fails or runs under -v, silent otherwise. Records written after the test
// ended (a goroutine that outlives it) are dropped instead of panicking. TESTUTIL_LOG=1
// writes every record to stderr as well, for a live view.
func Logger(t testing.TB) *slog.Logger {
	t.Helper()
	return slog.New(slog.NewTextHandler(Writer(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Writer returns a writer to t's output with Logger's rules (shown on failure or under
// -v, dropped after the test, copied to stderr with TESTUTIL_LOG=1): for the stderr of a
// child process.
func Writer(t testing.TB) io.Writer {
	t.Helper()
	w := &testWriter{out: t.Output()}
	t.Cleanup(w.stop)
	if os.Getenv("TESTUTIL_LOG") != "" {
		return io.MultiWriter(w, os.Stderr)
	}
	return w
}

// Discard returns a logger that drops every record.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testWriter forwards to a test's output until the test ends.
type testWriter struct {
	mu  sync.Mutex
	out io.Writer // nil once the test ended; guarded by mu
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.out != nil {
		_, _ = w.out.Write(p)
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.out = nil
	w.mu.Unlock()
}
