// Package pgtest runs throwaway PostgreSQL servers for tests: Debian's binaries
// (/usr/lib/postgresql/<version>/bin), a data directory under the temporary directory,
// a free port on 127.0.0.1 and the unix socket beside the data. Test code only.
//
// Most tests want a fresh database on a server shared by the package: DB(t). A
// package that uses it wraps its TestMain with Main, so the shared server is stopped
// when the tests end:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m)) }
//
// Fault tests start a server of their own (Start) and Stop, Crash and Restart it.
//
// When the binaries are missing, tests are skipped with the install command, or fail
// with it under CI (the CI environment variable) or REALTIME_REQUIRE_POSTGRES=1.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"encore.app/internal/freeport"
	"github.com/jackc/pgx/v5"
)

// InstallHint is the command that installs what the harness needs.
const InstallHint = "apt-get install -y postgresql"

// ErrNoPostgres: the server binaries were not found.
var ErrNoPostgres = errors.New("pgtest: PostgreSQL server binaries not found (install them: " + InstallHint + ")")

// BinDir returns the directory holding initdb and postgres: $PGTEST_BINDIR, else the
// newest /usr/lib/postgresql/*/bin, else the directory of initdb on $PATH.
func BinDir() (string, error) {
	has := func(dir string) bool {
		for _, b := range []string{"initdb", "postgres"} {
			if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.IsDir() {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("PGTEST_BINDIR"); d != "" {
		if has(d) {
			return d, nil
		}
		return "", fmt.Errorf("%w: PGTEST_BINDIR=%s has no initdb and postgres", ErrNoPostgres, d)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, d := range dirs {
		if has(d) {
			return d, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p), nil
	}
	return "", ErrNoPostgres
}

func pgVersion(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// Required reports whether a missing PostgreSQL fails the tests instead of skipping
// them: under CI, or with REALTIME_REQUIRE_POSTGRES=1.
func Required() bool {
	return os.Getenv("CI") != "" || os.Getenv("REALTIME_REQUIRE_POSTGRES") == "1"
}

// Need skips the test (or fails it when Required) if the binaries are missing.
func Need(t testing.TB) string {
	t.Helper()
	dir, err := BinDir()
	if err != nil {
		if Required() {
			t.Fatalf("%v", err)
		}
		t.Skipf("%v", err)
	}
	return dir
}

// Server is one PostgreSQL server (postmaster) started by this process. Methods are
// not safe for concurrent use with each other; URL and Port are.
type Server struct {
	bin  string // directory of the binaries
	base string // temporary directory: data/, the socket, server.log
	port int
	cred *syscall.Credential // nil: run as the current user

	proc *exec.Cmd
	done chan struct{} // closed when proc has exited

	dbs atomic.Uint64 // databases created by NewDB
}

// Options tune a server. The zero value is what tests want.
type Options struct {
	// Durable keeps fsync on (the default turns it off: an OS crash is not a test
	// case, a server crash still loses nothing committed, the WAL is written).
	Durable bool
	// Settings are extra "name=value" server settings (postgres -c).
	Settings []string
	// Port on 127.0.0.1 (0: a free one). For programs (a benchmark) whose servers
	// must stay in a range of ports; tests leave it 0.
	Port int
}

// New creates a data directory (initdb) and starts a server on a free port of
// 127.0.0.1. The caller must Close it.
func New(o Options) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, base: base}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	// initdb (and postgres) refuse to run as root: "cannot be run as root". As root,
	// run them as the unprivileged user the Debian package creates (postgres), or
	// nobody, owning the temporary directory.
	if os.Geteuid() == 0 {
		if s.cred, err = unprivileged(); err != nil {
			return nil, err
		}
		if err := os.Chown(base, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(base, 0o755); err != nil {
		return nil, err
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", s.dataDir(), "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.Env = append(os.Environ(), "LC_ALL=C")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %v: %s", err, out)
	}
	settings := []string{
		"listen_addresses=127.0.0.1", "unix_socket_directories=" + base, "max_connections=400",
		"shared_buffers=64MB", "log_min_messages=warning", "log_min_error_statement=panic",
		"dynamic_shared_memory_type=posix", "max_wal_size=1GB", "checkpoint_timeout=30min",
	}
	if !o.Durable {
		settings = append(settings, "fsync=off", "full_page_writes=off")
	}
	settings = append(settings, o.Settings...)
	var conf strings.Builder
	conf.WriteString("\n# pgtest\n")
	for _, kv := range settings {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&conf, "%s = '%s'\n", strings.TrimSpace(k), strings.ReplaceAll(strings.TrimSpace(v), "'", "''"))
	}
	if err := appendFile(filepath.Join(s.dataDir(), "postgresql.conf"), conf.String()); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		if s.port = o.Port; s.port == 0 {
			if s.port, err = freePort(); err != nil {
				return nil, err
			}
		}
		err = s.start()
		if err == nil || attempt == 4 || o.Port != 0 {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// Start is New for one test: it skips or fails the test when the binaries are
// missing, and closes the server at the end of the test.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	Need(t)
	s, err := New(o)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func unprivileged() (*syscall.Credential, error) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if uid == 0 {
			continue
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, errors.New("pgtest: running as root and no unprivileged user (postgres, nobody) to run PostgreSQL as")
}

func (s *Server) dataDir() string { return filepath.Join(s.base, "data") }

// Port is the TCP port on 127.0.0.1 (stable across Restart).
func (s *Server) Port() int { return s.port }

// URL is the connection string of database db.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// start launches the postmaster and waits until it accepts connections.
func (s *Server) start() error {
	logf, err := os.OpenFile(filepath.Join(s.base, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.dataDir(), "-p", strconv.Itoa(s.port))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	// Pdeathsig: a test binary that dies (a timeout panic, a kill) takes the server
	// with it. The kernel sends it when the thread that started the process exits, so
	// that thread stays locked to the goroutine that waits for the server.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	started := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if err := cmd.Start(); err != nil {
			started <- err
			close(done)
			return
		}
		started <- nil
		_ = cmd.Wait()
		close(done)
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	s.proc, s.done = cmd, done
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		c, err := pgx.Connect(ctx, s.URL("postgres"))
		if err == nil {
			_ = c.Close(ctx)
			return nil
		}
		select {
		case <-done:
			s.proc = nil
			return fmt.Errorf("pgtest: postgres exited at start: %s", s.logTail())
		case <-ctx.Done():
			s.signal(syscall.SIGQUIT)
			<-done
			s.proc = nil
			return fmt.Errorf("pgtest: postgres not ready in 60s: %v: %s", err, s.logTail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.base, "server.log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func (s *Server) signal(sig syscall.Signal) {
	if s.proc != nil && s.proc.Process != nil {
		_ = s.proc.Process.Signal(sig)
	}
}

// stop sends sig to the postmaster and waits for it to exit.
func (s *Server) stop(sig syscall.Signal) {
	if s.proc == nil {
		return
	}
	s.signal(sig)
	select {
	case <-s.done:
	case <-time.After(60 * time.Second):
		_ = syscall.Kill(-s.proc.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	s.proc = nil
}

// Stop shuts the server down cleanly ("fast": open sessions are disconnected,
// a checkpoint is written). Idempotent.
func (s *Server) Stop() { s.stop(syscall.SIGINT) }

// Crash stops the server as a crash would ("immediate": no checkpoint; the next
// start runs crash recovery from the WAL). Idempotent.
func (s *Server) Crash() { s.stop(syscall.SIGQUIT) }

// Restart starts a stopped server again on the same port and data.
func (s *Server) Restart() error {
	if s.proc != nil {
		return nil
	}
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		// Right after a crash the old backends may hold shared memory for a moment.
		if err = s.start(); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// PID is the postmaster's process id (0 while stopped): for a benchmark's CPU share.
func (s *Server) PID() int {
	if s.proc == nil || s.proc.Process == nil {
		return 0
	}
	return s.proc.Process.Pid
}

// Running reports whether the postmaster is up.
func (s *Server) Running() bool { return s.proc != nil }

// Close stops the server and removes its directory. Idempotent.
func (s *Server) Close() {
	s.Stop()
	if s.base != "" {
		_ = os.RemoveAll(s.base)
		s.base = ""
	}
}

// NewDB creates a fresh, empty database and returns its URL.
func (s *Server) NewDB(ctx context.Context) (string, error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), s.dbs.Add(1))
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("pgtest: create database: %w", err)
	}
	return s.URL(name), nil
}

// DropDB drops the database of url, disconnecting its sessions. Errors are ignored
// (the server may be gone).
func (s *Server) DropDB(url string) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil || s.proc == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return
	}
	defer c.Close(context.Background())
	_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{cfg.Database}.Sanitize()+" WITH (FORCE)")
}

// DB returns the URL of a fresh database on the server shared by the package's tests
// (started on first use), dropped at the end of the test. Wrap TestMain with Main.
func (s *Server) DB(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url, err := s.NewDB(ctx)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { s.DropDB(url) })
	return url
}

var shared struct {
	mu  sync.Mutex
	srv *Server
	err error
}

// Shared returns the package's shared server, starting it on first use; it skips or
// fails t like Need when the binaries are missing.
func Shared(t testing.TB) *Server {
	t.Helper()
	Need(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv == nil && shared.err == nil {
		shared.srv, shared.err = New(Options{})
	}
	if shared.err != nil {
		t.Fatalf("%v", shared.err)
	}
	return shared.srv
}

// DB is Shared(t).DB(t): a fresh database on the shared server.
func DB(t testing.TB) string {
	t.Helper()
	return Shared(t).DB(t)
}

// CloseShared stops the shared server, if it was started.
func CloseShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		shared.srv.Close()
		shared.srv = nil
	}
}

// TestingM is what goleak.VerifyTestMain takes.
type TestingM interface{ Run() int }

type mainRunner struct{ m TestingM }

func (r mainRunner) Run() int {
	defer CloseShared()
	return r.m.Run()
}

// Main wraps m so that the shared server is stopped after the tests ran (and before
// goleak looks for leaked goroutines).
func Main(m TestingM) TestingM { return mainRunner{m} }

// freePort: the server is restarted on its port (Restart), see internal/freeport.
func freePort() (int, error) { return freeport.Pick() }

func appendFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(s); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
