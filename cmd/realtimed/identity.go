package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The instance name appears in welcome frames, metrics and the fleet health bucket.
// Without -instance it is "<hostname>-<random>", created on first start and kept in
// <data>/instance-id, so a restarted instance keeps its name (its health record is
// replaced, not left to expire next to a new one). <data>/instance.lock holds the pid
// of the process using the data directory: two live processes must not share a name,
// so a second one on the same directory is refused with a clear error.

const (
	idFile   = "instance-id"
	lockFile = "instance.lock"
)

// instanceIdentity returns the persistent instance name for dir and a release func
// that removes the lock. It creates dir if needed.
func instanceIdentity(dir string) (name string, release func(), err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("instance identity: %w", err)
	}
	release, err = lockDir(dir)
	if err != nil {
		return "", nil, err
	}
	p := filepath.Join(dir, idFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		name = strings.TrimSpace(string(b))
		if name == "" || len(name) > 128 {
			release()
			return "", nil, fmt.Errorf("instance identity: %s holds no valid name; delete it or set -instance", p)
		}
		return name, release, nil
	case !errors.Is(err, os.ErrNotExist):
		release()
		return "", nil, fmt.Errorf("instance identity: %w", err)
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "realtime"
	}
	var r [4]byte
	_, _ = rand.Read(r[:])
	name = host + "-" + hex.EncodeToString(r[:])
	if err := os.WriteFile(p, []byte(name+"\n"), 0o644); err != nil {
		release()
		return "", nil, fmt.Errorf("instance identity: %w", err)
	}
	return name, release, nil
}

// lockDir takes <dir>/instance.lock for this process. A lock left by a process that
// is gone is taken over.
func lockDir(dir string) (release func(), err error) {
	p := filepath.Join(dir, lockFile)
	for attempt := 0; attempt < 2; attempt++ {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			_, werr := f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
			cerr := f.Close()
			if werr != nil || cerr != nil {
				os.Remove(p)
				return nil, fmt.Errorf("instance lock: %w", errors.Join(werr, cerr))
			}
			return func() { os.Remove(p) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("instance lock: %w", err)
		}
		b, _ := os.ReadFile(p)
		pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if perr == nil && pid > 0 && pid != os.Getpid() && processAlive(pid) {
			return nil, fmt.Errorf("data directory %s is in use by process %d: give each instance its own -data (or stop that process)", dir, pid)
		}
		os.Remove(p) // stale: its process is gone
	}
	return nil, fmt.Errorf("instance lock: could not take %s", p)
}

func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return err == nil || errors.Is(err, syscall.EPERM)
}
