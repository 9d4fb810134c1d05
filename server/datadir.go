package server

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The data directory holds the embedded NATS storage (nats/), the instance name
// (instance-id) and a lock (instance.lock) held for the life of the process, so that
// two processes never open the same storage: a second one waits up to
// Environment.LockWait for the first to release it (an overlapping live reload under
// `encore run`), then is refused with an error naming the process that holds it. The
// lock is an flock: the kernel releases it when its process dies, even by SIGKILL.
//
// Without Options.Instance the name is "<hostname>-<random>", created on first start
// and kept in instance-id, so a restarted instance keeps its name (its health record is
// replaced, not left to expire next to a new one).

const (
	idFile   = "instance-id"
	lockFile = "instance.lock"
)

// dataDir is a locked data directory.
type dataDir struct {
	path    string
	release func() // frees the lock; idempotent
}

// openDataDir resolves dir against root (when relative), creates it and takes its lock,
// waiting up to wait for another process to release it.
func openDataDir(dir, root string, wait time.Duration, log *slog.Logger) (*dataDir, error) {
	if !filepath.IsAbs(dir) && root != "" {
		dir = filepath.Join(root, dir)
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	release, err := lockDir(filepath.Join(dir, lockFile), wait, log)
	if err != nil {
		return nil, fmt.Errorf("data directory %s: %w", dir, err)
	}
	return &dataDir{path: dir, release: release}, nil
}

// instance returns the persistent instance name kept in the directory.
func (d *dataDir) instance() (string, error) {
	p := filepath.Join(d.path, idFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		name := strings.TrimSpace(string(b))
		if name == "" || len(name) > 128 {
			return "", fmt.Errorf("instance identity: %s holds no valid name; delete it or set the instance name", p)
		}
		return name, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("instance identity: %w", err)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "realtime"
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	name := host + "-" + hex.EncodeToString(r[:])
	if err := os.WriteFile(p, []byte(name+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("instance identity: %w", err)
	}
	return name, nil
}

// errLocked is returned by tryLock when another process holds the lock.
var errLocked = errors.New("locked")

// lockDir takes the lock file p, retrying every 100ms for up to wait.
func lockDir(p string, wait time.Duration, log *slog.Logger) (func(), error) {
	deadline := time.Now().Add(wait)
	for waited := false; ; waited = true {
		release, err := tryLock(p)
		if !errors.Is(err, errLocked) {
			if waited && err == nil {
				log.Info("data directory released by the previous process", "lock", p)
			}
			return release, err
		}
		if !waited && wait > 0 {
			log.Info("data directory in use, waiting for it", "lock", p, "holder", strings.TrimSpace(readSmall(p)), "wait", wait)
		}
		if !time.Now().Before(deadline) {
			holder := strings.TrimSpace(readSmall(p))
			if holder == "" {
				holder = "another process"
			} else {
				holder = "process " + holder
			}
			return nil, fmt.Errorf("in use by %s: give each instance its own data directory (or stop that process)", holder)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readSmall(p string) string {
	b, err := os.ReadFile(p)
	if err != nil || len(b) > 64 {
		return ""
	}
	return string(b)
}

// TempDataDir creates a fresh data directory under the system's temporary directory
// for a process that keeps nothing (tests under `encore test`, which never shut the
// app down), after removing the ones earlier processes left behind: those older than a
// minute (a new one is locked at once) whose lock no live process holds.
func TempDataDir(prefix string) (string, error) {
	old, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, dir := range old {
		if fi, err := os.Stat(dir); err != nil || time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		release, err := tryLock(filepath.Join(dir, lockFile))
		if err != nil {
			continue // in use (or not ours to judge)
		}
		release()
		_ = os.RemoveAll(dir)
	}
	return os.MkdirTemp("", prefix)
}
