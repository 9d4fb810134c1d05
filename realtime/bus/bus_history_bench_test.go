package bus

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"encore.app/realtime/protocol"
)

// go test -run XXX -bench Last ./realtime/bus/: Last (direct gets) against a Replay of
// the same 100 events (a consumer), on an embedded stream of 30,000 events, the
// channel holding every tenth.
func BenchmarkLast(b *testing.B) {
	j, err := NewJetStream(b.Context(), Config{DataDir: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	var evs []*protocol.Event
	var dense []uint64
	for i := range 30000 {
		ch := "other"
		if i%10 == 0 {
			ch = "dense"
		}
		evs = append(evs, ev(ch, fmt.Sprintf("e%d", i), `{"x":1}`))
	}
	for len(evs) > 0 {
		n := min(500, len(evs))
		acks, err := j.Publish(b.Context(), evs[:n])
		if err != nil {
			b.Fatal(err)
		}
		for i, a := range acks {
			if evs[i].Channel == "dense" {
				dense = append(dense, a.Seq)
			}
		}
		evs = evs[n:]
	}
	upTo := dense[750]
	b.Run("last", func(b *testing.B) {
		for b.Loop() {
			n := 0
			if err := j.Last(b.Context(), "dense", upTo, 100, func(*protocol.Event) error { n++; return nil }); err != nil || n != 100 {
				b.Fatal(err, n)
			}
		}
	})
	b.Run("replay", func(b *testing.B) {
		for b.Loop() {
			n := 0
			if err := j.Replay(b.Context(), []string{"dense"}, dense[650], upTo, func(*protocol.Event) error { n++; return nil }); err != nil || n != 100 {
				b.Fatal(err, n)
			}
		}
	})
}
