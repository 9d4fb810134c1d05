package testutil

import (
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
)

// Logger returns a logger whose records (Debug and above) go to t's output: shown when
// the test fails or runs under -v, silent otherwise. Records written after the test
// ended (a goroutine that outlives it) are dropped instead of panicking. TESTUTIL_LOG=1
// writes every record to stderr as well, for a live view.
func Logger(t testing.TB) *slog.Logger {
	t.Helper()
	w := &testWriter{out: t.Output()}
	t.Cleanup(w.stop)
	var out io.Writer = w
	if os.Getenv("TESTUTIL_LOG") != "" {
		out = io.MultiWriter(w, os.Stderr)
	}
	return slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
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
