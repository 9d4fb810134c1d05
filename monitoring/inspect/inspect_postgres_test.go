package inspect

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/pgmigrations"
)

// pgPool is a pool on a fresh database with the realtime schema, closed after the test.
func pgPool(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	ctx := testutil.Context(t)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pgmigrations.Apply(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

// The Postgres asker is the NATS one's equal: every instance of the bucket answers,
// a session matches on its instance only, a closed instance is missing from the
// answers, and an answer larger than a notification (8000 bytes) arrives whole.
func TestPostgresAsksEveryInstance(t *testing.T) {
	url := pgtest.DB(t)
	big := make([]string, 40)
	for i := range big {
		big[i] = fmt.Sprintf("%d", 42)
	}
	fleet := [][]string{{"42", "7"}, append([]string{"42", ""}, big...), {"7"}}
	var askers []*Postgres
	for i, users := range fleet {
		local := fakeInstance(fmt.Sprintf("i%d", i), users...)
		if i == 1 { // its answer is far beyond a notification's 8000 bytes
			local = withChannels(local, 10)
		}
		// Each instance on its own pool, as separate processes would be.
		p, err := NewPostgres(context.Background(), pgPool(t, url), "realtime", local, quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		askers = append(askers, p)
	}
	// Another namespace on the same database never answers this one's queries.
	other, err := NewPostgres(context.Background(), pgPool(t, url), "realtime-other", fakeInstance("x", "42"), quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = other.Close() })

	// Patient: the machine is shared; the queries return once every answer is in.
	ctx := testutil.Context(t)
	res, err := askers[0].Connections(ctx, Query{Match: " 42 ", Limit: MaxPerInstance}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !res.FleetWide || res.Expected != 3 || len(res.Answers) != 3 {
		t.Fatalf("result %+v", res)
	}
	if a := res.Answers[1]; a.Instance != "i1" || a.Matched != 41 || len(a.Connections) != 41 || res.Answers[2].Matched != 0 {
		t.Fatalf("answers %s", matched(res))
	}
	if b, _ := json.Marshal(res.Answers[1]); len(b) < 20000 || len(res.Answers[1].Connections[40].Channels) != 10 {
		t.Fatalf("the large answer: %d bytes", len(b))
	}
	res, _ = askers[2].Connections(ctx, Query{Match: "i1-s1"}, 3)
	if got := matched(res); got != "i0:0 i1:1 i2:0" {
		t.Fatalf("session lookup %s", got)
	}
	res, _ = askers[1].Connections(ctx, Query{Match: Anonymous, Limit: 1}, 3)
	if got := matched(res); got != "i0:0 i1:1 i2:0" {
		t.Fatalf("anonymous lookup %s", got)
	}
	res, _ = other.Connections(ctx, Query{Match: "42"}, 1)
	if got := matched(res); got != "x:1" {
		t.Fatalf("other namespace %s", got)
	}

	// An instance that stops answering: the query returns what arrived when ctx ends.
	if err := askers[1].Close(); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 5*time.Second) // it waits for the third to the end
	defer cancel2()
	res, err = askers[0].Connections(short, Query{Match: "42"}, 3)
	if err != nil || len(res.Answers) != 2 || res.Expected != 3 {
		t.Fatalf("with one instance gone: %v %s", err, matched(res))
	}
	if _, err := askers[0].Connections(ctx, Query{Match: "  "}, 3); err != ErrBadQuery {
		t.Fatalf("empty query: %v", err)
	}
	// Nothing is left behind in the table.
	var n int
	if err := askers[0].pool.QueryRow(ctx, "SELECT count(*) FROM realtime_inspect_answers").Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d answers left, %v", n, err)
	}
}

// withChannels gives every connection of local's answers n long channel names.
func withChannels(local Local, n int) Local {
	return func(q Query) Answer {
		a := local(q)
		for i := range a.Connections {
			for j := range n {
				a.Connections[i].Channels = append(a.Connections[i].Channels, fmt.Sprintf("room:%s:%02d", strings.Repeat("x", 40), j))
			}
		}
		return a
	}
}

// The listener reconnects after Postgres restarts: queries are answered again.
func TestPostgresAskerSurvivesRestart(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	url := srv.DB(t)
	var askers []*Postgres
	for i := range 2 {
		p, err := NewPostgres(context.Background(), pgPool(t, url), "realtime", fakeInstance(fmt.Sprintf("i%d", i), "42"), quiet)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		askers = append(askers, p)
	}
	srv.Crash()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "both instances to answer after the restart", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		res, err := askers[0].Connections(ctx, Query{Match: "42"}, 2)
		return err == nil && matched(res) == "i0:1 i1:1"
	})
}
