package bus

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"encore.app/realtime/protocol"
)

// lastAll collects Last's answer.
func lastAll(t *testing.T, b Bus, ch string, upTo uint64, n int) []*protocol.Event {
	t.Helper()
	var out []*protocol.Event
	if err := b.Last(testCtx(t, 20*time.Second), ch, upTo, n, func(e *protocol.Event) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("Last(%s, %d, %d): %v", ch, upTo, n, err)
	}
	return out
}

// wantLast is the newest n seqs of ch at or below upTo, oldest first.
func wantLast(bySeq map[uint64]string, ch string, upTo uint64, n int) []uint64 {
	var all []uint64
	for s, c := range bySeq {
		if c == ch && (upTo == 0 || s <= upTo) {
			all = append(all, s)
		}
	}
	slices.Sort(all)
	if len(all) > n {
		all = all[len(all)-n:]
	}
	return all
}

// Last answers the newest n events of one channel at or below upTo, in order, for a
// dense channel, a sparse one and one with fewer events than asked, with the direct
// gets and with the consumer fallback (a stream without direct gets).
func TestLast(t *testing.T) {
	b := openBus(t, Config{})
	rng := rand.New(rand.NewPCG(1, 2))
	bySeq := map[uint64]string{}
	var evs []*protocol.Event
	for i := range 3000 {
		ch := "dense"
		switch r := rng.IntN(100); {
		case r < 3:
			ch = "sparse"
		case r < 4 && i < 1000:
			ch = "few"
		case r < 50:
			ch = "other"
		}
		evs = append(evs, ev(ch, fmt.Sprintf("e%d", i), fmt.Sprintf(`{"i":%d}`, i)))
	}
	for len(evs) > 0 {
		n := min(len(evs), 500)
		for i, a := range publish(t, b, evs[:n]...) {
			bySeq[a.Seq] = evs[i].Channel
		}
		evs = evs[n:]
	}
	head := uint64(len(bySeq))
	check := func(t *testing.T) {
		for _, ch := range []string{"dense", "sparse", "few", "none"} {
			for _, n := range []int{1, 7, 100, 1000} {
				for _, upTo := range []uint64{0, head, head / 2, 17, 1} {
					got := seqs(lastAll(t, b, ch, upTo, n))
					if want := wantLast(bySeq, ch, upTo, n); !slices.Equal(got, want) {
						t.Fatalf("%s n=%d upTo=%d: got %d events %v, want %d %v", ch, n, upTo, len(got), clip(got), len(want), clip(want))
					}
				}
			}
		}
		// Channel and data come back as stored.
		got := lastAll(t, b, "few", 0, 1)
		if len(got) != 1 || got[0].Channel != "few" || got[0].Type != "t" || len(got[0].Data) == 0 {
			t.Fatalf("event: %+v", got)
		}
	}
	t.Run("direct", check)
	t.Run("fallback", func(t *testing.T) {
		js, err := jetstream.New(b.Conn())
		if err != nil {
			t.Fatal(err)
		}
		ctx := testCtx(t, 10*time.Second)
		s, err := js.Stream(ctx, b.cfg.Stream)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		cfg.AllowDirect = false
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
		check(t)
	})
}

func clip(s []uint64) []uint64 {
	if len(s) > 8 {
		return append(slices.Clip(s[:4]), s[len(s)-4:]...)
	}
	return s
}

// LastByReplay (the generic implementation) agrees with Last.
func TestLastByReplay(t *testing.T) {
	b := openBus(t, Config{})
	for i := range 50 {
		publish(t, b, ev([]string{"x", "y"}[i%2], fmt.Sprintf("i%d", i), ""))
	}
	var got []uint64
	if err := LastByReplay(testCtx(t, 10*time.Second), b, "x", 40, 5, func(e *protocol.Event) error {
		got = append(got, e.Seq)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := seqs(lastAll(t, b, "x", 40, 5)); !slices.Equal(got, want) || len(got) != 5 {
		t.Fatalf("LastByReplay %v, Last %v", got, want)
	}
}
