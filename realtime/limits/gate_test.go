package limits

import (
	"testing"
	"time"
)

// New sessions get 80% of the connections; resuming sessions can use all of them.
func TestGateReservesConnectionsForResumes(t *testing.T) {
	g := NewGate(GateConfig{MaxConnections: 10, ResumeShare: 0.2, RetryMin: time.Second, RetryMax: 3 * time.Second})
	now := time.Now()
	var rels []func()
	for i := range 8 {
		rel, _, ok := g.Admit(false, now)
		if !ok {
			t.Fatalf("new session %d refused", i)
		}
		rels = append(rels, rel)
	}
	_, retry, ok := g.Admit(false, now)
	if ok || retry < time.Second || retry > 3*time.Second {
		t.Fatalf("9th new session: ok=%v retry=%v, want refused with a hint in [1s,3s]", ok, retry)
	}
	for i := range 2 {
		rel, _, ok := g.Admit(true, now)
		if !ok {
			t.Fatalf("resume %d refused", i)
		}
		rels = append(rels, rel)
	}
	if _, _, ok := g.Admit(true, now); ok {
		t.Fatal("11th connection admitted")
	}
	rels[0]()
	rels[0]() // release is idempotent
	if g.Active() != 9 {
		t.Fatalf("active %d after one release, want 9", g.Active())
	}
	if _, _, ok := g.Admit(false, now); ok {
		t.Fatal("new session admitted above its share (9 active, share 8)")
	}
	if _, _, ok := g.Admit(true, now); !ok {
		t.Fatal("resume refused with a free place")
	}
	fresh, resuming := g.Refused()
	if fresh != 2 || resuming != 1 {
		t.Fatalf("refused %d new / %d resuming", fresh, resuming)
	}
}

// Under a connect storm the rate is shared the same way: new sessions are cut at
// (1-share) of it while resumes still pass.
func TestGateRatePrefersResumes(t *testing.T) {
	g := NewGate(GateConfig{ConnectRate: 10, ConnectBurst: 10, ResumeShare: 0.3})
	now := time.Now()
	fresh := 0
	for range 20 {
		if _, _, ok := g.Admit(false, now); ok {
			fresh++
		}
	}
	resumed := 0
	for range 20 {
		if _, _, ok := g.Admit(true, now); ok {
			resumed++
		}
	}
	if fresh != 7 || resumed != 3 {
		t.Fatalf("in one instant: %d new, %d resumed; want 7 and 3", fresh, resumed)
	}
	_, retry, ok := g.Admit(true, now)
	if ok || retry < 100*time.Millisecond {
		t.Fatalf("refusal retry %v", retry)
	}
	later := now.Add(time.Second)
	resumed = 0
	for range 20 {
		if _, _, ok := g.Admit(true, later); ok {
			resumed++
		}
	}
	if resumed != 10 {
		t.Fatalf("a second later %d resumes passed, want 10", resumed)
	}
}
