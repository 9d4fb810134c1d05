package main

import "testing"

func TestSeqSetLossAndDuplicates(t *testing.T) {
	s := newSeqSet(100, 1000)
	for _, q := range []uint64{100, 101, 103, 103, 200, 150, 99, 5000} {
		s.add(q)
	}
	if s.unique != 5 || s.dups != 1 || s.outOfRange != 2 || s.reordered != 1 {
		t.Fatalf("unique=%d dups=%d out=%d reordered=%d", s.unique, s.dups, s.outOfRange, s.reordered)
	}
	if !s.has(150) || s.has(102) || s.has(99) || s.has(1_000_000) {
		t.Fatal("has")
	}
	if m := s.missing([]uint64{100, 101, 102, 103, 104}); m != 2 {
		t.Fatalf("missing %d", m)
	}
}

func TestSeqSetBound(t *testing.T) {
	s := newSeqSet(1, 64)
	if !s.add(64) || s.add(65) {
		t.Fatal("bound")
	}
	if len(s.bits) != 1 {
		t.Fatalf("bitmap grew past its bound: %d words", len(s.bits))
	}
}

func TestAccounting(t *testing.T) {
	l := newLedger()
	// channel 0 gets odd sequences, channel 1 even ones; one retried publish acked twice.
	for q := uint64(1); q <= 20; q++ {
		l.add(int(q%2), q)
	}
	l.add(1, 7)
	pub := map[int][]uint64{0: l.channel(0), 1: l.channel(1)}
	if len(pub[1]) != 10 || l.count() != 20 || l.maxSeq() != 20 {
		t.Fatalf("ledger: %d %d %d", len(pub[1]), l.count(), l.maxSeq())
	}
	a := newSeqSet(1, 100) // subscribed to channel 1, missed 7, got 9 twice
	for q := uint64(1); q <= 20; q += 2 {
		if q != 7 {
			a.add(q)
		}
	}
	a.add(9)
	b := newSeqSet(1, 100) // subscribed to both, got everything
	for q := uint64(1); q <= 20; q++ {
		b.add(q)
	}
	var acc accounting
	acc.account(a, []int{1}, pub)
	acc.account(b, []int{0, 1}, pub)
	want := accounting{Expected: 30, Received: 29, Lost: 1, Duplicates: 1}
	if acc != want {
		t.Fatalf("got %+v want %+v", acc, want)
	}
}
