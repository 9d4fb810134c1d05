package inspect

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/stream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(pgtest.Main(m), testutil.LeakOptions()...) }

func startNATS(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s.ClientURL()
}

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeInstance answers with one connection per user "u<i>" it holds.
func fakeInstance(name string, users ...string) Local {
	return func(q Query) Answer {
		a := Answer{Instance: name}
		for i, u := range users {
			if q.Matches(u, fmt.Sprintf("%s-s%d", name, i)) {
				a.Matched++
				if len(a.Connections) < q.Limit {
					a.Connections = append(a.Connections, stream.Connection{User: u, Session: fmt.Sprintf("%s-s%d", name, i), Transport: "stream"})
				}
			}
		}
		return a
	}
}

func TestNATSAsksEveryInstance(t *testing.T) {
	url := startNATS(t)
	var askers []*NATS
	for i, users := range [][]string{{"42", "7"}, {"42", "42", ""}, {"7"}} {
		n, err := NewNATS(connect(t, url), "", fakeInstance(fmt.Sprintf("i%d", i), users...), quiet)
		if err != nil {
			t.Fatal(err)
		}
		askers = append(askers, n)
	}
	ctx := testutil.Context(t)
	res, err := askers[0].Connections(ctx, Query{Match: " 42 "}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !res.FleetWide || res.Expected != 3 || len(res.Answers) != 3 {
		t.Fatalf("result %+v", res)
	}
	if a := res.Answers[1]; a.Instance != "i1" || a.Matched != 2 || len(a.Connections) != 2 || res.Answers[2].Matched != 0 {
		t.Fatalf("answers %+v", res.Answers)
	}
	// A session matches on its instance only; "anonymous" matches the user-less one.
	res, _ = askers[2].Connections(ctx, Query{Match: "i1-s1"}, 3)
	if got := matched(res); got != "i0:0 i1:1 i2:0" {
		t.Fatalf("session lookup %s", got)
	}
	res, _ = askers[2].Connections(ctx, Query{Match: Anonymous, Limit: 1}, 3)
	if got := matched(res); got != "i0:0 i1:1 i2:0" {
		t.Fatalf("anonymous lookup %s", got)
	}

	// An instance that stops answering: the query returns what arrived when ctx ends.
	if err := askers[1].Close(); err != nil {
		t.Fatal(err)
	}
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	res, err = askers[0].Connections(short, Query{Match: "42"}, 3)
	if err != nil || len(res.Answers) != 2 || res.Expected != 3 {
		t.Fatalf("with one instance gone: %v %+v", err, res)
	}
	if _, err := askers[0].Connections(ctx, Query{Match: "  "}, 3); err != ErrBadQuery {
		t.Fatalf("empty query: %v", err)
	}
	for _, n := range askers {
		_ = n.Close()
	}
}

func matched(r Result) string {
	var parts []string
	for _, a := range r.Answers {
		parts = append(parts, fmt.Sprintf("%s:%d", a.Instance, a.Matched))
	}
	return strings.Join(parts, " ")
}

func TestEncodeBoundedHalvesUntilItFits(t *testing.T) {
	a := Answer{Instance: "x"}
	for i := 0; i < 40; i++ {
		a.Connections = append(a.Connections, stream.Connection{User: strings.Repeat("u", 100)})
	}
	b, err := encodeBounded(a, 1000)
	if err != nil || len(b) > 1000 {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
}

func TestLocalOnly(t *testing.T) {
	l := LocalOnly{Local: fakeInstance("only", "42")}
	res, err := l.Connections(context.Background(), Query{Match: "42"}, 5)
	if err != nil || res.FleetWide || res.Expected != 1 || len(res.Answers) != 1 || res.Answers[0].Matched != 1 {
		t.Fatalf("%v %+v", err, res)
	}
}
