package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"encore.app/realtime/bus"
)

func TestInstanceIdentityPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	d, err := openDataDir(dir, "", 0, quiet)
	if err != nil {
		t.Fatal(err)
	}
	name, err := d.instance()
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if !strings.HasPrefix(name, host+"-") {
		t.Errorf("name %q does not start with the hostname %q", name, host)
	}
	d.release()
	d, err = openDataDir(dir, "", 0, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer d.release()
	if again, _ := d.instance(); again != name {
		t.Errorf("after a restart the name is %q, was %q", again, name)
	}
	other, err := openDataDir(t.TempDir(), "", 0, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer other.release()
	if n, err := other.instance(); err != nil || n == name {
		t.Errorf("another data dir: %q %v (want a different name)", n, err)
	}
}

// A relative directory is under Environment.Root.
func TestDataDirUnderRoot(t *testing.T) {
	root := t.TempDir()
	d, err := openDataDir("data", root, 0, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer d.release()
	if d.path != filepath.Join(root, "data") {
		t.Fatalf("path %s", d.path)
	}
}

// A second holder of the directory is refused with the first one's pid, or waits for
// it with a lock wait; a lock file left behind by a dead process is taken over.
func TestDataDirLock(t *testing.T) {
	dir := t.TempDir()
	first, err := openDataDir(dir, "", 0, quiet)
	if err != nil {
		t.Fatal(err)
	}
	_, err = openDataDir(dir, "", 0, quiet)
	if err == nil || !strings.Contains(err.Error(), "in use by process "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second holder: %v", err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		first.release()
	}()
	second, err := openDataDir(dir, "", time.Minute, quiet) // waits for the release
	if err != nil {
		t.Fatalf("waiting holder: %v", err)
	}
	second.release()

	// A lock file whose process is gone holds no lock: it is taken over.
	if err := os.WriteFile(filepath.Join(dir, lockFile), []byte("999999999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	third, err := openDataDir(dir, "", 0, quiet)
	if err != nil {
		t.Fatalf("stale lock file: %v", err)
	}
	third.release()
}

func TestNATSFlagsFromEnvironment(t *testing.T) {
	o, err := parseArgs(t, map[string]string{"REALTIME_NATS_USER": "rt", "REALTIME_NATS_PASSWORD": "pw"},
		"-nats-url", "nats://n:4222", "-nats-tls-ca", "/etc/ca.pem", "-replicas", "3")
	if err != nil {
		t.Fatal(err)
	}
	want := bus.ClientAuth{User: "rt", Password: "pw", TLSCA: "/etc/ca.pem"}
	if o.natsAuth() != want || o.Replicas != 3 {
		t.Fatalf("got %+v replicas %d, want %+v and 3", o.natsAuth(), o.Replicas, want)
	}
}

func TestNATSOptionsNeedURL(t *testing.T) {
	_, err := parseArgs(t, nil, "-data", t.TempDir(), "-nats-token", "t")
	if err == nil || !strings.Contains(err.Error(), "need an external NATS") || !strings.Contains(err.Error(), "-nats-url") {
		t.Fatalf("err %v, want a clear refusal", err)
	}
	o, err := parseArgs(t, nil, "-data", t.TempDir(), "-nats-url", "nats://127.0.0.1:1", "-nats-user", "u")
	if err != nil {
		t.Fatal(err)
	}
	if _, err = New(context.Background(), o); !errors.Is(err, bus.ErrClientAuth) {
		t.Fatalf("user without password: %v", err)
	}
}

// TempDataDir removes the directories of processes that are gone, not of live ones.
func TestTempDataDirRemovesLeftovers(t *testing.T) {
	prefix := "realtime-test-tempdatadir-" + strconv.Itoa(os.Getpid()) + "-"
	left, err := TempDataDir(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(left, lockFile), []byte("1\n"), 0o644); err != nil { // unlocked: its process is gone
		t.Fatal(err)
	}
	if err := os.Chtimes(left, time.Time{}, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	live, err := TempDataDir(prefix)
	if err != nil {
		t.Fatal(err)
	}
	d, err := openDataDir(live, "", 0, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(live, time.Time{}, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	fresh, err := TempDataDir(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.release(); os.RemoveAll(live); os.RemoveAll(fresh) })
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover %s not removed: %v", left, err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("live %s removed: %v", live, err)
	}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestAppRoot(t *testing.T) {
	root := t.TempDir()
	sub := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := AppRoot(sub); got != sub {
		t.Errorf("no encore.app: %s, want %s", got, sub)
	}
	if err := os.WriteFile(filepath.Join(root, "encore.app"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := AppRoot(sub); got != root {
		t.Errorf("below the app: %s, want %s", got, root)
	}
}
