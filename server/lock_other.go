//go:build !unix

package server

import (
	"errors"
	"os"
	"strconv"
	"sync"
)

// tryLock creates p exclusively (no flock on this platform): a lock left by a crashed
// process must be deleted by hand.
func tryLock(p string) (func(), error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, os.ErrExist) {
		return nil, errLocked
	}
	if err != nil {
		return nil, err
	}
	_, _ = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	_ = f.Close()
	var once sync.Once
	return func() { once.Do(func() { _ = os.Remove(p) }) }, nil
}
