package stream

import (
	"testing"

	"encore.app/realtime/protocol"
)

// The window only claims what it holds: after a sequence gap, a cursor before the gap is
// sent to the bus, not answered from memory with the gap silently missing.
func TestPoolWindowGap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		seqs    []uint64
		cursor  uint64
		fromBus bool
		events  int
	}{
		{"contiguous", []uint64{1, 2, 3, 4}, 1, false, 3},
		{"before gap", []uint64{1, 2, 7, 8}, 1, true, 0},
		{"at gap edge", []uint64{1, 2, 7, 8}, 6, false, 2},
		{"gap then eviction", []uint64{1, 2, 7, 8, 9}, 2, true, 0},
		{"gap at start", []uint64{5, 6}, 0, true, 0},
		{"evicted", []uint64{1, 2, 3, 4, 5, 6, 7}, 2, true, 0},
		{"evicted edge", []uint64{1, 2, 3, 4, 5, 6, 7}, 3, false, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPool(4)
			p.reset(0)
			for _, s := range tc.seqs {
				if !p.record(&outEvent{seq: s, channel: "c"}) {
					t.Fatalf("seq %d refused", s)
				}
			}
			c := &Client{}
			cur := &protocol.Cursor{Seq: tc.cursor, Epoch: "e"}
			var job *replayJob
			p.subscribe(c, []string{"c"}, cur, "e", 10, func(j *replayJob) { job = j })
			if job.fromBus != tc.fromBus || len(job.events) != tc.events {
				t.Fatalf("fromBus %v events %d, want %v %d (floor %d)", job.fromBus, len(job.events), tc.fromBus, tc.events, p.floor)
			}
		})
	}
}
