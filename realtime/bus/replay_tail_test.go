package bus

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"encore.app/realtime/protocol"
)

// verifyReplayTail asks the stream, not the replay consumer, whether an event was
// left out between the last delivered sequence and upTo.
func TestVerifyReplayTail(t *testing.T) {
	b := openBus(t, Config{})
	ctx := testCtx(t, 10*time.Second)
	// a: seqs 1..5; b: seq 6; a: seq 7
	var evs []*protocol.Event
	for i := range 5 {
		evs = append(evs, ev("a", fmt.Sprintf("a%d", i), ""))
	}
	evs = append(evs, ev("b", "b0", ""), ev("a", "a5", ""))
	if _, err := b.Publish(ctx, evs); err != nil {
		t.Fatal(err)
	}
	a, bb := b.prefix+"a", b.prefix+"b"
	for _, c := range []struct {
		subjects   []string
		last, upTo uint64
		missed     bool
	}{
		{[]string{a}, 5, 6, false},    // next a is 7 > upTo
		{[]string{a}, 3, 6, true},     // a4, a5 (seqs 4, 5) not delivered
		{[]string{bb}, 3, 6, true},    // b0 (seq 6) not delivered
		{[]string{bb}, 6, 7, false},   // nothing on b after 6
		{[]string{a, bb}, 5, 7, true}, // a at 7
		{[]string{a}, 7, 7, false},    // complete
		{[]string{b.prefix + "zzz"}, 0, 7, false},
	} {
		err := b.verifyReplayTail(ctx, c.subjects, c.last, c.upTo)
		if c.missed != (err != nil) || (err != nil && !errors.Is(err, ErrUnavailable)) {
			t.Errorf("%v after %d up to %d: err %v, missed %v", c.subjects, c.last, c.upTo, err, c.missed)
		}
	}
}
