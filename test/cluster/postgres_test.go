package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
)

// startPostgresInstance starts an instance whose bus is on the Postgres database url,
// with o's engine settings and presence (its store on the bus's pool).
func startPostgresInstance(t testing.TB, name, url string, o instanceOpts) *instance {
	t.Helper()
	ctx := testutil.Context(t)
	b, err := bus.OpenPostgres(ctx, url, bus.PostgresConfig{Logger: quiet()})
	if err != nil {
		t.Fatalf("%s: bus: %v", name, err)
	}
	ec := o.engine
	ec.Instance, ec.PublisherKey, ec.Logger = name, publisherKey, quiet()
	if ec.RetryMax == 0 {
		ec.RetryMin, ec.RetryMax = 20*time.Millisecond, 200*time.Millisecond
	}
	pres := startPostgresPresence(t, name, b.Pool(), o.presence, &ec)
	in := serveInstance(ctx, t, name, ec, b, b)
	in.pres = pres
	t.Cleanup(in.kill)
	return in
}

// Three instances on one Postgres database: the presence scenario of
// TestPresenceThreeInstances (presenceThree), the store on Postgres.
func TestPresenceThreeInstancesPostgres(t *testing.T) {
	t.Parallel()
	ctx := testutil.ContextWithin(t, testBound)
	url := pgtest.Start(t, pgtest.Options{}).DB(t)
	var ins []*instance
	for i := range 3 {
		ins = append(ins, startPostgresInstance(t, fmt.Sprintf("inst-%d", i), url, presenceInstance))
	}
	presenceThree(t, ctx, ins)
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
		ins = append(ins, startPostgresInstance(b, fmt.Sprintf("inst-%d", i), url, instanceOpts{}))
	}
	fanout(b, ins)
}
