package main

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"encore.app/realtime/protocol"
)

const (
	closeGo = "../../realtime/protocol/close.go"
	codesTS = "../../client/src/codes.gen.ts"
)

// TestCommittedFileIsCurrent fails when client/src/codes.gen.ts does not match close.go
// and protocol.ActionFor: a drift between the Go and TypeScript close-code tables.
func TestCommittedFileIsCurrent(t *testing.T) {
	src, err := os.ReadFile(closeGo)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Generate(src)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(codesTS)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run go generate ./cmd/tscodes and commit it", codesTS)
	}
}

func TestParseCodes(t *testing.T) {
	src, err := os.ReadFile(closeGo)
	if err != nil {
		t.Fatal(err)
	}
	codes, err := ParseCodes(src)
	if err != nil {
		t.Fatal(err)
	}
	byGo := map[string]Code{}
	for _, c := range codes {
		byGo[c.GoName] = c
	}
	// A few constants by their Go values: the parse reads what the compiler reads.
	for name, v := range map[string]protocol.CloseCode{
		"CloseNormal":      protocol.CloseNormal,
		"CloseSlow":        protocol.CloseSlow,
		"CloseTokenExpire": protocol.CloseTokenExpire,
		"CloseUsePoll":     protocol.CloseUsePoll,
		"CloseUnauthorize": protocol.CloseUnauthorize,
		"CloseForbidden":   protocol.CloseForbidden,
	} {
		c, ok := byGo[name]
		if !ok || c.Value != int(v) {
			t.Errorf("%s: parsed %+v, want value %d", name, c, v)
		}
	}
	if c := byGo["CloseTokenExpire"]; c.TSName != "TokenExpired" {
		t.Errorf("CloseTokenExpire: TypeScript name %q, want TokenExpired (published API)", c.TSName)
	}
	if c := byGo["CloseSlow"]; c.TSName != "Slow" || !strings.Contains(c.Comment, "slow consumer") {
		t.Errorf("CloseSlow: %+v", c)
	}
}

func TestParseCodesRefuses(t *testing.T) {
	for name, src := range map[string]string{
		"no constants":  "package p\nconst X = 1\n",
		"not a literal": "package p\ntype CloseCode int\nconst CloseX CloseCode = 1 + 2\n",
		"out of range":  "package p\ntype CloseCode int\nconst CloseX CloseCode = 70000\n",
		"bad name":      "package p\ntype CloseCode int\nconst Other CloseCode = 4000\n",
		"twice":         "package p\ntype CloseCode int\nconst (\n\tCloseX CloseCode = 4000\n\tCloseX2 CloseCode = 4001\n\tCloseUnauthorize CloseCode = 4401\n\tCloseUnauthorized CloseCode = 4402\n)\n",
		"not Go":        "package",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseCodes([]byte(src)); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// TestActionRanges checks the ranges against protocol.ActionFor at their edges and
// against the documented groups.
func TestActionRanges(t *testing.T) {
	def := protocol.ActionFor(-1)
	rs := ActionRanges(def)
	lookup := func(c int) string {
		for _, r := range rs {
			if c >= r.First && c <= r.Last {
				return r.Action
			}
		}
		return def.String()
	}
	for c := 0; c <= maxCode; c++ {
		if got, want := lookup(c), protocol.ActionFor(protocol.CloseCode(c)).String(); got != want {
			t.Fatalf("code %d: ranges say %s, ActionFor %s", c, got, want)
		}
	}
	for c, want := range map[int]string{1000: "stop", 1006: "backoff", 4000: "backoff", 4100: "retry-after", 4299: "refresh-token", 4300: "use-poll", 4999: "stop", 5000: "backoff"} {
		if got := lookup(c); got != want {
			t.Errorf("code %d: %s, want %s", c, got, want)
		}
	}
}
