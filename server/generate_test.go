package server

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// The Encore config struct, its CUE defaults and docs/settings.md are generated from
// the Options tags; a stale copy fails here (run go generate ./server).
func TestGeneratedFilesAreCurrent(t *testing.T) {
	files, err := Generated()
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range files {
		got, err := os.ReadFile(filepath.Join("..", p))
		if err != nil {
			t.Errorf("%s: %v (run go generate ./server)", p, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date: run go generate ./server", p)
		}
	}
}
