package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Shared is one Server per process for a shell whose parts all reach the same server
// (the Encore services). The zero value is ready; safe for concurrent use.
type Shared struct {
	s  atomic.Pointer[Server]
	mu sync.Mutex // held while building
}

// Get returns the server, building it on first use with the options of opts (a minute
// at most). A failed build is not remembered: the next Get tries again.
func (sh *Shared) Get(opts func() (Options, error)) (*Server, error) {
	if s := sh.s.Load(); s != nil {
		return s, nil
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if s := sh.s.Load(); s != nil {
		return s, nil
	}
	o, err := opts()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := New(ctx, o)
	if err != nil {
		return nil, err
	}
	sh.s.Store(s)
	return s, nil
}

// AppRoot is the directory holding encore.app at or above dir (`encore run` starts the
// app where it was called, maybe below the root), else dir.
func AppRoot(dir string) string {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "encore.app")); err == nil {
			return d
		} else if !errors.Is(err, os.ErrNotExist) || filepath.Dir(d) == d {
			return dir
		}
	}
}
