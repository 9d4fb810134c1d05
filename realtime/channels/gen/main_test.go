package main

import (
	"bytes"
	"os"
	"testing"

	"encore.app/realtime/channels"
)

// The committed channels.schema.json is what go generate writes now. (The TypeScript
// module generated from it is checked by make check-generated.)
func TestBundleIsCurrent(t *testing.T) {
	t.Chdir("..") // where go generate runs
	want, err := Bundle()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("channels.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("channels.schema.json is stale: run go generate ./realtime/channels and commit it")
	}
}

// The app's families are a valid set and compile into a validator.
func TestFamilies(t *testing.T) {
	if err := channels.Families.Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := channels.Families.Validator(); err != nil {
		t.Fatal(err)
	}
}
