package main

import (
	"slices"
	"sync"
)

// seqSet records which sequences one client received, as a bitmap over
// [base, base+maxSpan). It is how loss and duplicates are counted per client: a
// sequence seen twice is a duplicate; a published sequence of a subscribed channel that
// is not in the set is lost. Not safe for concurrent use (one per client goroutine).
type seqSet struct {
	base    uint64
	maxSpan uint64
	bits    []uint64

	unique     uint64 // distinct sequences recorded
	dups       uint64 // sequences seen again
	outOfRange uint64 // below base or past maxSpan (not ours, or a bound hit)
	reordered  uint64 // arrived below the highest sequence seen so far (new ones only)
	last       uint64
}

func newSeqSet(base, maxSpan uint64) *seqSet {
	return &seqSet{base: base, maxSpan: maxSpan}
}

// add records seq and reports whether it was new.
func (s *seqSet) add(seq uint64) bool {
	if seq < s.base || seq-s.base >= s.maxSpan {
		s.outOfRange++
		return false
	}
	off := seq - s.base
	w := int(off / 64)
	if w >= len(s.bits) {
		n := max(w+1, 2*len(s.bits))
		n = min(n, int((s.maxSpan+63)/64))
		s.bits = append(s.bits, make([]uint64, n-len(s.bits))...)
	}
	m := uint64(1) << (off % 64)
	if s.bits[w]&m != 0 {
		s.dups++
		return false
	}
	s.bits[w] |= m
	s.unique++
	if seq < s.last {
		s.reordered++
	}
	s.last = max(s.last, seq)
	return true
}

func (s *seqSet) has(seq uint64) bool {
	if seq < s.base || seq-s.base >= s.maxSpan {
		return false
	}
	off := seq - s.base
	w := int(off / 64)
	return w < len(s.bits) && s.bits[w]&(1<<(off%64)) != 0
}

// missing counts the sequences of published that s lacks.
func (s *seqSet) missing(published []uint64) uint64 {
	var n uint64
	for _, q := range published {
		if !s.has(q) {
			n++
		}
	}
	return n
}

// ledger records the sequences the bus acknowledged, per channel. Safe for concurrent use.
type ledger struct {
	mu    sync.Mutex
	seqs  map[int][]uint64 // channel index -> acked sequences
	total uint64
	maxSq uint64
}

func newLedger() *ledger { return &ledger{seqs: map[int][]uint64{}} }

func (l *ledger) add(ch int, seq uint64) {
	l.mu.Lock()
	l.seqs[ch] = append(l.seqs[ch], seq)
	l.total++
	l.maxSq = max(l.maxSq, seq)
	l.mu.Unlock()
}

// maxSeq is the highest acknowledged sequence so far.
func (l *ledger) maxSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxSq
}

// channel returns the sorted, de-duplicated acked sequences of channel ch (a retried
// publish acknowledged as a duplicate carries the original sequence).
func (l *ledger) channel(ch int) []uint64 {
	l.mu.Lock()
	s := slices.Clone(l.seqs[ch])
	l.mu.Unlock()
	slices.Sort(s)
	return slices.Compact(s)
}

// count is the number of distinct acked events.
func (l *ledger) count() int {
	l.mu.Lock()
	chs := make([]int, 0, len(l.seqs))
	for ch := range l.seqs {
		chs = append(chs, ch)
	}
	l.mu.Unlock()
	n := 0
	for _, ch := range chs {
		n += len(l.channel(ch))
	}
	return n
}

// accounting is the loss and duplicate tally over a set of clients.
type accounting struct {
	Expected   uint64 `json:"expected"`   // sum over clients of acked events on their channels
	Received   uint64 `json:"received"`   // distinct events received
	Lost       uint64 `json:"lost"`       // expected but not received
	Duplicates uint64 `json:"duplicates"` // received again (after any client-side dedup)
	Reordered  uint64 `json:"reordered"`  // received below an already received sequence
	Foreign    uint64 `json:"foreign"`    // outside the run's sequence range
}

// account tallies one client's set against the ledger for the channels it subscribed.
func (a *accounting) account(s *seqSet, channels []int, pub map[int][]uint64) {
	for _, ch := range channels {
		p := pub[ch]
		a.Expected += uint64(len(p))
		a.Lost += s.missing(p)
	}
	a.Received += s.unique
	a.Duplicates += s.dups
	a.Reordered += s.reordered
	a.Foreign += s.outOfRange
}
