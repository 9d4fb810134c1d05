package main

import (
	"math/rand/v2"
	"testing"
)

func TestPickDistinct(t *testing.T) {
	f := &fleet{}
	for i := 0; i < 50; i++ {
		f.clients = append(f.clients, &wsClient{idx: i})
	}
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 200; round++ {
		got := f.pick(r, 20)
		seen := map[*wsClient]bool{}
		for _, c := range got {
			if seen[c] {
				t.Fatalf("round %d: client %d picked twice", round, c.idx)
			}
			seen[c] = true
		}
		if len(got) != 20 {
			t.Fatalf("picked %d", len(got))
		}
	}
	if n := len(f.pick(r, 80)); n != 50 {
		t.Fatalf("picked %d of 50", n)
	}
}
