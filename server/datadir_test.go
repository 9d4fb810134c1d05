package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"encore.app/realtime/bus"
)

func TestInstanceIdentityPersists(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	name, release, err := instanceIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if !strings.HasPrefix(name, host+"-") {
		t.Errorf("name %q does not start with the hostname %q", name, host)
	}
	release()
	again, release2, err := instanceIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer release2()
	if again != name {
		t.Errorf("after a restart the name is %q, was %q", again, name)
	}
	if other, rel, err := instanceIdentity(t.TempDir()); err != nil || other == name {
		t.Errorf("another data dir: %q %v (want a different name)", other, err)
	} else {
		rel()
	}
}

func TestInstanceLockRefusesALiveProcess(t *testing.T) {
	dir := t.TempDir()
	// the test's parent process (go test) is alive and is not us
	lock := filepath.Join(dir, lockFile)
	if err := os.WriteFile(lock, []byte(strconv.Itoa(os.Getppid())+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := instanceIdentity(dir)
	if err == nil || !strings.Contains(err.Error(), "in use by process") {
		t.Fatalf("err %v, want in use", err)
	}

	// a lock left by a process that exited is taken over
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("no `true` command:", err)
	}
	if err := os.WriteFile(lock, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, release, err := instanceIdentity(dir)
	if err != nil {
		t.Fatalf("stale lock: %v", err)
	}
	b, _ := os.ReadFile(lock)
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		t.Errorf("lock holds %q, want our pid", b)
	}
	release()
	if _, err := os.Stat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("lock not removed: %v", err)
	}
}

func TestNATSFlagsFromEnvironment(t *testing.T) {
	t.Setenv("REALTIME_NATS_USER", "rt")
	t.Setenv("REALTIME_NATS_PASSWORD", "pw")
	o, err := parseFlags([]string{"-nats-tls-ca", "/etc/ca.pem", "-replicas", "3"})
	if err != nil {
		t.Fatal(err)
	}
	want := bus.ClientAuth{User: "rt", Password: "pw", TLSCA: "/etc/ca.pem"}
	if o.natsAuth != want || o.replicas != 3 {
		t.Fatalf("got %+v replicas %d, want %+v and 3", o.natsAuth, o.replicas, want)
	}
}

func TestNATSOptionsNeedURL(t *testing.T) {
	o, err := parseFlags([]string{"-data", t.TempDir(), "-nats-token", "t"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = newServer(context.Background(), o, newLogger("text", "error"))
	if err == nil || !strings.Contains(err.Error(), "need -nats-url") {
		t.Fatalf("err %v, want a clear refusal", err)
	}
	o, _ = parseFlags([]string{"-data", t.TempDir(), "-nats-url", "nats://127.0.0.1:1", "-nats-user", "u"})
	if _, err = newServer(context.Background(), o, newLogger("text", "error")); !errors.Is(err, bus.ErrClientAuth) {
		t.Fatalf("user without password: %v", err)
	}
}
