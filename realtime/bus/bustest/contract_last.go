package bustest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"encore.app/realtime/protocol"
)

// testLast: Bus.Last answers the newest n events of one channel at or below upTo, in
// seq order, with their fields as published; fn's error stops it; bad names are refused.
func testLast(t *testing.T, be *Backend) {
	b := be.Open(t, Options{})
	chans := []string{"a", "b", "b.c", "user:42"}
	var all []*protocol.Event
	for i := range 90 {
		ch := chans[i%len(chans)]
		if i%10 == 0 {
			ch = "rare"
		}
		all = append(all, Ev(ch, fmt.Sprint("l", i), fmt.Sprintf(`{"i":%d}`, i)))
	}
	acks := publish(t, b, all...)
	bySeq := map[uint64]*protocol.Event{}
	for i, a := range acks {
		all[i].Seq = a.Seq
		bySeq[a.Seq] = all[i]
	}
	head := acks[len(acks)-1].Seq
	want := func(ch string, upTo uint64, n int) []uint64 {
		var out []uint64
		for _, e := range all {
			if e.Channel == ch && (upTo == 0 || e.Seq <= upTo) {
				out = append(out, e.Seq)
			}
		}
		return out[max(0, len(out)-n):]
	}
	for _, tc := range []struct {
		ch   string
		upTo uint64
		n    int
	}{
		{"a", 0, 5}, {"a", head, 1000}, {"b", head / 2, 3}, {"b.c", 7, 10}, {"rare", 0, 4},
		{"user:42", head + 100, 2}, {"nobody", 0, 10}, {"a", 1, 5}, {"a", 0, 0},
	} {
		var got []*protocol.Event
		if err := b.Last(Ctx(t, 20*time.Second), tc.ch, tc.upTo, tc.n, func(e *protocol.Event) error {
			got = append(got, e)
			return nil
		}); err != nil {
			t.Fatalf("Last(%s, %d, %d): %v", tc.ch, tc.upTo, tc.n, err)
		}
		if w := want(tc.ch, tc.upTo, tc.n); !slices.Equal(Seqs(got), w) {
			t.Errorf("Last(%s, %d, %d) = %v, want %v", tc.ch, tc.upTo, tc.n, Seqs(got), w)
		}
		for _, g := range got {
			src := bySeq[g.Seq]
			if g.ID != src.ID || g.Channel != src.Channel || string(g.Data) != string(src.Data) || g.TS != src.TS || g.Type != src.Type {
				t.Fatalf("Last gave %+v, want %+v", g, src)
			}
		}
	}
	stop := errors.New("stop")
	n := 0
	if err := b.Last(Ctx(t, 10*time.Second), "a", 0, 10, func(*protocol.Event) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	}); err != stop || n != 2 {
		t.Fatalf("Last returned %v after %d calls", err, n)
	}
	if err := b.Last(Ctx(t, 5*time.Second), "a.>", 0, 5, func(*protocol.Event) error { return nil }); !errors.Is(err, protocol.ErrBadChannel) {
		t.Fatalf("Last bad channel: %v", err)
	}
}
