package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/stream"
)

// startPostgresInstance starts an instance whose bus is on the Postgres database url.
func startPostgresInstance(t testing.TB, name, url string) *instance {
	t.Helper()
	ctx := testutil.Context(t)
	b, err := bus.OpenPostgres(ctx, url, bus.PostgresConfig{Logger: quiet()})
	if err != nil {
		t.Fatalf("%s: bus: %v", name, err)
	}
	in := serveInstance(ctx, t, name, stream.Config{Instance: name, PublisherKey: publisherKey, Logger: quiet(),
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}, b, b)
	t.Cleanup(in.kill)
	return in
}

// BenchmarkFanoutThreeInstancesPostgres is BenchmarkFanoutThreeInstances with the three
// instances on one Postgres database (fsync on) instead of the R3 NATS cluster.
func BenchmarkFanoutThreeInstancesPostgres(b *testing.B) {
	pgtest.Need(b)
	srv, err := pgtest.New(pgtest.Options{Durable: true})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	url, err := srv.NewDB(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	var ins []*instance
	for i := range 3 {
		ins = append(ins, startPostgresInstance(b, fmt.Sprintf("inst-%d", i), url))
	}
	fanout(b, ins)
}
