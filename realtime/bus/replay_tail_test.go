package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"encore.app/internal/testutil"
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

// A replay whose consumer's replica is behind (or whose delivery had a gap) goes on from
// the last delivered event
// with a new consumer, waiting a little longer each time, until it completes or its
// context ends; other errors end it at once.
func TestReplayContinuesPastAReplicaBehind(t *testing.T) {
	behind := fmt.Errorf("bus: replay: %w: %w: seq 9 not delivered", ErrUnavailable, errReplicaBehind)
	synctest.Test(t, func(t *testing.T) {
		var froms []uint64
		var at []time.Duration
		start := time.Now()
		results := []struct {
			last uint64
			err  error
		}{{4, behind}, {4, behind}, {7, behind}, {10, nil}}
		err := replayContinuing(context.Background(), 2, func(after uint64) (uint64, error) {
			froms = append(froms, after)
			at = append(at, time.Since(start))
			r := results[len(froms)-1]
			return r.last, r.err
		})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(froms) != "[2 4 4 7]" {
			t.Fatalf("consumers started after %v, want [2 4 4 7]", froms)
		}
		if fmt.Sprint(at) != "[0s 20ms 60ms 140ms]" {
			t.Fatalf("consumers started at %v, want [0s 20ms 60ms 140ms]", at)
		}

		// Behind until the context ends: its error is the replica's.
		ctx := testutil.Context(t)
		n := 0
		err = replayContinuing(ctx, 0, func(uint64) (uint64, error) { n++; return 0, behind })
		if !errors.Is(err, errReplicaBehind) || !errors.Is(err, ErrUnavailable) || n < 5 {
			t.Fatalf("always behind: %v after %d consumers", err, n)
		}
		// A delivery gap goes on from the last event delivered in order, too.
		gap := fmt.Errorf("bus: replay: %w: %w after consumer seq 256", ErrUnavailable, errDeliveryGap)
		froms = nil
		if err := replayContinuing(context.Background(), 0, func(after uint64) (uint64, error) {
			froms = append(froms, after)
			if len(froms) == 1 {
				return 256, gap
			}
			return 300, nil
		}); err != nil || fmt.Sprint(froms) != "[0 256]" {
			t.Fatalf("after a delivery gap: %v, consumers started after %v, want [0 256]", err, froms)
		}
		// Any other error ends it at once (ctx has ended: no pause either).
		stop := errors.New("stop")
		n = 0
		if err := replayContinuing(ctx, 0, func(uint64) (uint64, error) { n++; return 3, stop }); err != stop || n != 1 {
			t.Fatalf("fn's error: %v after %d consumers", err, n)
		}
	})
}
