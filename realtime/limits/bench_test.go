package limits

import (
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
)

// BenchmarkConnCapAcquire: one Acquire+release (create, list, delete on the KV bucket of
// an embedded NATS) with users holding 5 connections each: the cost the cap adds to a
// connect.
func BenchmarkConnCapAcquire(b *testing.B) {
	ctx := testutil.Context(b)
	jsb, err := bus.NewJetStream(ctx, bus.Config{DataDir: b.TempDir(), Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer jsb.Close()
	js, _ := jetstream.New(jsb.Conn())
	cc, err := NewConnCap(ctx, js, ConnCapConfig{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Close()
	for u := range 100 {
		for range 4 {
			if _, _, err := cc.Acquire(ctx, fmt.Sprint(u)); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		rel, _, err := cc.Acquire(ctx, fmt.Sprint(i%100))
		if err != nil {
			b.Fatal(err)
		}
		rel()
	}
}

func BenchmarkKeyedLimiterAllow(b *testing.B) {
	l := NewKeyedLimiter(1000, 1000, 0, nil)
	keys := make([]string, 10_000)
	for i := range keys {
		keys[i] = fmt.Sprint("10.0.", i/256, ".", i%256)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		l.Allow(keys[i%len(keys)])
	}
}
