package flag

import (
	"fmt"
	"hash/fnv"
	"math"
	"testing"
)

func TestEvaluate(t *testing.T) {
	// Users whose bucket for "f" is known, to place them around a rollout edge.
	var low, high string // bucket < 3000, bucket >= 3000
	for i := 0; low == "" || high == ""; i++ {
		u := fmt.Sprintf("u%d", i)
		if Bucket("f", u) < 3000 {
			low = u
		} else {
			high = u
		}
	}
	tests := []struct {
		name string
		flag Flag
		user string
		want bool
	}{
		{"on for everyone", Flag{Name: "f", Enabled: true, Rollout: 100}, high, true},
		{"killed beats rollout", Flag{Name: "f", Enabled: false, Rollout: 100}, high, false},
		{"killed beats override", Flag{Name: "f", Enabled: false, Rollout: 100, Overrides: map[string]bool{low: true}}, low, false},
		{"zero rollout", Flag{Name: "f", Enabled: true, Rollout: 0}, low, false},
		{"override true at zero rollout", Flag{Name: "f", Enabled: true, Rollout: 0, Overrides: map[string]bool{low: true}}, low, true},
		{"override false at full rollout", Flag{Name: "f", Enabled: true, Rollout: 100, Overrides: map[string]bool{high: false}}, high, false},
		{"override for another user", Flag{Name: "f", Enabled: true, Rollout: 0, Overrides: map[string]bool{high: true}}, low, false},
		{"inside 30%", Flag{Name: "f", Enabled: true, Rollout: 30}, low, true},
		{"outside 30%", Flag{Name: "f", Enabled: true, Rollout: 30}, high, false},
		{"anonymous at full rollout", Flag{Name: "f", Enabled: true, Rollout: 100}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := NewEvaluator(tt.flag)
			if got := e.Evaluate("f", tt.user); got != tt.want {
				t.Fatalf("Evaluate(f, %q) = %v, want %v", tt.user, got, tt.want)
			}
			if got := e.EvaluateAll(tt.user)["f"]; got != tt.want {
				t.Fatalf("EvaluateAll(%q)[f] = %v, want %v", tt.user, got, tt.want)
			}
		})
	}
}

func TestEvaluateUnknownFlagIsFalse(t *testing.T) {
	e := NewEvaluator(Builtins()...)
	if e.Evaluate("no-such-flag", "u1") {
		t.Fatal("unknown flag evaluated true")
	}
	if _, ok := e.EvaluateAll("u1")["no-such-flag"]; ok {
		t.Fatal("unknown flag listed by EvaluateAll")
	}
}

func TestBuiltinStreamingV2DefaultsOn(t *testing.T) {
	e := NewEvaluator(Builtins()...)
	for i := range 1000 {
		if !e.Evaluate(StreamingV2, fmt.Sprintf("user-%d", i)) {
			t.Fatalf("%s off by default for user-%d", StreamingV2, i)
		}
	}
}

// TestBucketIsFNV1a pins the documented hash: changing it would move users between
// rollout groups on upgrade.
func TestBucketIsFNV1a(t *testing.T) {
	h := fnv.New64a()
	h.Write([]byte("realtime-streaming-v2:alice"))
	if got, want := Bucket("realtime-streaming-v2", "alice"), int(h.Sum64()%10000); got != want {
		t.Fatalf("Bucket = %d, want %d", got, want)
	}
	// Values computed independently (Python: FNV-1a 64 by hand), so a different
	// implementation fails here.
	for _, c := range []struct {
		user string
		want int
	}{{"alice", 454}, {"bob", 2105}, {"", 3262}} {
		if got := Bucket(StreamingV2, c.user); got != c.want {
			t.Errorf("Bucket(%s, %q) = %d, want %d", StreamingV2, c.user, got, c.want)
		}
	}
}

// TestRolloutShare checks that 30% reaches 30% (within 1.5 points) of 10,000 users
// for sequential and random-looking IDs, and that raising the rollout only adds users.
func TestRolloutShare(t *testing.T) {
	for _, idFmt := range []string{"user-%d", "%d", "u_%08x@example.com"} {
		t.Run(idFmt, func(t *testing.T) {
			e30 := NewEvaluator(Flag{Name: StreamingV2, Enabled: true, Rollout: 30})
			e50 := NewEvaluator(Flag{Name: StreamingV2, Enabled: true, Rollout: 50})
			on := 0
			for i := range 10000 {
				u := fmt.Sprintf(idFmt, i)
				in30 := e30.Evaluate(StreamingV2, u)
				if in30 {
					on++
				}
				if in30 && !e50.Evaluate(StreamingV2, u) {
					t.Fatalf("user %s in 30%% but not in 50%%", u)
				}
			}
			share := float64(on) / 100
			t.Logf("30%% rollout over 10,000 IDs %q: %.2f%% on", idFmt, share)
			if math.Abs(share-30) > 1.5 {
				t.Fatalf("share = %.2f%%, want 30±1.5", share)
			}
		})
	}
}

func TestRolloutIndependentPerFlag(t *testing.T) {
	a := NewEvaluator(Flag{Name: "flag-a", Enabled: true, Rollout: 50}, Flag{Name: "flag-b", Enabled: true, Rollout: 50})
	both := 0
	for i := range 10000 {
		u := fmt.Sprintf("user-%d", i)
		if a.Evaluate("flag-a", u) && a.Evaluate("flag-b", u) {
			both++
		}
	}
	// Independent 50% groups overlap on ~25%; identical groups would give 50%.
	if both < 2200 || both > 2800 {
		t.Fatalf("users in both 50%% rollouts = %d of 10000, want ~2500", both)
	}
}

func TestChanged(t *testing.T) {
	a := NewEvaluator(Flag{Name: "x", Revision: 1}, Flag{Name: "y", Revision: 1})
	b := NewEvaluator(Flag{Name: "x", Revision: 2}, Flag{Name: "y", Revision: 1})
	if !b.Changed(a, "x") || b.Changed(a, "y") {
		t.Fatal("Changed by revision wrong")
	}
	if !b.Changed(nil, "x") || !NewEvaluator().Changed(a, "x") || NewEvaluator().Changed(nil, "x") {
		t.Fatal("Changed by presence wrong")
	}
}

func TestEvaluatorCopies(t *testing.T) {
	src := Flag{Name: "x", Enabled: true, Overrides: map[string]bool{"u": true}}
	e := NewEvaluator(src)
	src.Overrides["u"] = false
	f, _ := e.Flag("x")
	f.Overrides["u"] = false
	if !e.Evaluate("x", "u") {
		t.Fatal("evaluator shares override maps with callers")
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"ab", "realtime-streaming-v2", "a1", "x-y-z"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a", "A-flag", "1abc", "-abc", "abc-", "a.b", "a b", "a*", "a>", "ü-flag",
		"a1234567890123456789012345678901234567890123456789012345678901234"} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("ValidateName(%q) accepted", bad)
		}
	}
}
