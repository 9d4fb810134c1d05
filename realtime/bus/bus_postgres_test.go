package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/protocol"
)

// Postgres-only behaviour; the shared contract is in bus_contract_test.go.

func openPG(t *testing.T, url string, cfg PostgresConfig) *Postgres {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	p, err := OpenPostgres(testCtx(t, 20*time.Second), url, cfg)
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func pgConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(testCtx(t, 10*time.Second), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestPostgresReadsNeverSeeGaps is the race that commit-order sequencing prevents:
// while publishers on three instances append, a reader repeatedly reads seq > cursor;
// every page must start at cursor+1 and be contiguous. With numbers allocated before
// commit (a sequence, an identity column), a page could hold n+2 while the
// transaction holding n+1 is still open, and a reader moving its cursor past it
// would lose n+1 for good.
func TestPostgresReadsNeverSeeGaps(t *testing.T) {
	url := pgtest.DB(t)
	ins := []*Postgres{openPG(t, url, PostgresConfig{}), openPG(t, url, PostgresConfig{}), openPG(t, url, PostgresConfig{})}
	const publishers, batches = 12, 40
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range batches {
				evs := []*protocol.Event{ev("c", fmt.Sprintf("p%d-%d-a", p, i), ""), ev("c", fmt.Sprintf("p%d-%d-b", p, i), "")}
				if _, err := ins[p%3].Publish(testCtx(t, 20*time.Second), evs); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	c := pgConn(t, url)
	ctx := testCtx(t, 60*time.Second)
	var cursor int64
	reads := 0
	for finished := false; ; {
		select {
		case <-done:
			finished = true
		default:
		}
		rows, err := c.Query(ctx, `SELECT seq FROM realtime_events WHERE stream = $1 AND seq > $2 ORDER BY seq`, DefaultPostgresStream, cursor)
		if err != nil {
			t.Fatal(err)
		}
		seqs, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		reads++
		for _, s := range seqs {
			if s != cursor+1 {
				t.Fatalf("read %d: seq %d after cursor %d: a gap visible to a reader", reads, s, cursor)
			}
			cursor = s
		}
		if finished && len(seqs) == 0 {
			break
		}
	}
	if want := int64(publishers * batches * 2); cursor != want {
		t.Fatalf("reader ended at %d, want %d", cursor, want)
	}
	t.Logf("%d reads, %d append transactions for %d publish calls", reads,
		ins[0].Appends()+ins[1].Appends()+ins[2].Appends(), publishers*batches)
}

// TestPostgresWriterLockOrdersCommits: a transaction holding the stream's row (a
// slow writer) keeps every other append waiting; what it appends gets the lower
// sequence and is visible before the waiting writer's higher one.
func TestPostgresWriterLockOrdersCommits(t *testing.T) {
	url := pgtest.DB(t)
	b := openPG(t, url, PostgresConfig{})
	sub := newCollector()
	if err := b.Subscribe(testCtx(t, 60*time.Second), 0, sub.handle); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 30*time.Second)
	slow, err := pgConn(t, url).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	if err := slow.QueryRow(ctx, `SELECT last_seq FROM realtime_streams WHERE name = $1 FOR UPDATE`, DefaultPostgresStream).Scan(&last); err != nil {
		t.Fatal(err)
	}
	acked := make(chan []Ack, 1)
	go func() {
		a, err := b.Publish(testCtx(t, 30*time.Second), []*protocol.Event{ev("c", "fast", "")})
		if err != nil {
			t.Errorf("publish: %v", err)
		}
		acked <- a
	}()
	// The publish waits behind the lock: until it is released nothing is visible.
	testutil.WaitFor(t, "the publish to wait for the lock", func() bool {
		var n int
		_ = pgConn(t, url).QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted`).Scan(&n)
		return n > 0
	})
	body := appendBody(nil, &protocol.Event{ID: "slow", Channel: "c", TS: 1})
	if _, err := slow.Exec(ctx, `INSERT INTO realtime_events (stream, seq, id, channel, body, at, start_bytes)
		VALUES ($1, $2, 'slow', 'c', $3, clock_timestamp(), 0)`, DefaultPostgresStream, last+1, body); err != nil {
		t.Fatal(err)
	}
	if _, err := slow.Exec(ctx, `UPDATE realtime_streams SET last_seq = $2 WHERE name = $1`, DefaultPostgresStream, last+1); err != nil {
		t.Fatal(err)
	}
	if got := sub.snapshot(); len(got) != 0 {
		t.Fatalf("events visible while the writer lock is held: %v", seqs(got))
	}
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	a := <-acked
	if a[0].Seq != uint64(last+2) {
		t.Fatalf("the waiting writer got seq %d, want %d", a[0].Seq, last+2)
	}
	if got := sub.waitN(t, 2, 10*time.Second); got[0].ID != "slow" || got[1].ID != "fast" || got[1].Seq != got[0].Seq+1 {
		t.Fatalf("subscriber got %v", seqs(got))
	}
}

// TestPostgresCoalescesPublishes: Publish calls queued while the writer waits for the
// stream's lock are committed in the same transaction.
func TestPostgresCoalescesPublishes(t *testing.T) {
	url := pgtest.DB(t)
	b := openPG(t, url, PostgresConfig{})
	publish(t, b, ev("c", "warm", ""))
	ctx := testCtx(t, 30*time.Second)
	hold, err := pgConn(t, url).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := hold.Exec(ctx, `SELECT 1 FROM realtime_streams WHERE name = $1 FOR UPDATE`, DefaultPostgresStream); err != nil {
		t.Fatal(err)
	}
	before := b.Appends()
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := b.Publish(testCtx(t, 30*time.Second), []*protocol.Event{ev("c", fmt.Sprint("e", i), "")}); err != nil {
				t.Errorf("publish: %v", err)
			}
		})
	}
	// The writer waits for the lock with what it took; every call is handed over.
	if err := testutil.Eventually(ctx, testutil.Patience, func() bool { return b.Pending() >= n }); err != nil {
		t.Errorf("%d publishes pending, want %d: %v", b.Pending(), n, err) // go on: the lock must be released
	}
	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if got := b.Appends() - before; got != 1 {
		t.Fatalf("%d publishes took %d transactions, want 1", n, got)
	}
	if info, _ := b.Info(ctx); info.LastSeq != n+1 {
		t.Fatalf("LastSeq %d, want %d", info.LastSeq, n+1)
	}
}

// TestPostgresPollCatchesMissedNotification: an event committed without a
// notification (a lost one) still reaches the subscription, by its poll.
func TestPostgresPollCatchesMissedNotification(t *testing.T) {
	url := pgtest.DB(t)
	b := openPG(t, url, PostgresConfig{PollInterval: 100 * time.Millisecond})
	sub := newCollector()
	if err := b.Subscribe(testCtx(t, 60*time.Second), 0, sub.handle); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 10*time.Second)
	body := appendBody(nil, &protocol.Event{ID: "quiet", Channel: "c", TS: 1})
	if _, err := pgConn(t, url).Exec(ctx, `INSERT INTO realtime_events (stream, seq, id, channel, body, at, start_bytes)
		VALUES ($1, 1, 'quiet', 'c', $2, clock_timestamp(), 0)`, DefaultPostgresStream, body); err != nil {
		t.Fatal(err)
	}
	if got := sub.waitN(t, 1, 10*time.Second); got[0].ID != "quiet" {
		t.Fatalf("got %+v", got[0])
	}
	// Garbage in the table is skipped and counted.
	if _, err := pgConn(t, url).Exec(ctx, `INSERT INTO realtime_events (stream, seq, id, channel, body, at, start_bytes)
		VALUES ($1, 2, 'bad', 'c', 'not json', clock_timestamp(), 0)`, DefaultPostgresStream); err != nil {
		t.Fatal(err)
	}
	if _, err := pgConn(t, url).Exec(ctx, `UPDATE realtime_streams SET last_seq = 2 WHERE name = $1`, DefaultPostgresStream); err != nil {
		t.Fatal(err)
	}
	if a := publish(t, b, ev("c", "ok", "")); a[0].Seq != 3 {
		t.Fatalf("seq %d", a[0].Seq)
	}
	if got := sub.waitN(t, 2, 10*time.Second); got[1].ID != "ok" || got[1].Seq != 3 {
		t.Fatalf("got %v", seqs(got))
	}
	if r := replayAll(t, b, []string{"c"}, 0, 3); !slices.Equal(seqs(r), []uint64{1, 3}) {
		t.Fatalf("replay %v", seqs(r))
	}
	if m := b.Malformed(); m != 2 {
		t.Fatalf("Malformed() = %d, want 2 (subscribe and replay)", m)
	}
}

// TestPostgresListenerReconnects: the listening connection is killed; the bus
// reconnects it (Connected goes false, then true) and live delivery goes on.
func TestPostgresListenerReconnects(t *testing.T) {
	url := pgtest.DB(t)
	b := openPG(t, url, PostgresConfig{PollInterval: time.Hour}) // notifications only
	sub := newCollector()
	if err := b.Subscribe(testCtx(t, 60*time.Second), 0, sub.handle); err != nil {
		t.Fatal(err)
	}
	publish(t, b, ev("c", "1", ""))
	sub.waitN(t, 1, 10*time.Second)
	ctx := testCtx(t, 20*time.Second)
	var killed int
	if err := pgConn(t, url).QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&killed); err != nil || killed != 1 {
		t.Fatalf("terminated %d listeners: %v", killed, err)
	}
	testutil.WaitFor(t, "the listener to be back", func() bool { return b.Connected() && listening(t, url) })
	publish(t, b, ev("c", "2", ""))
	if got := sub.waitN(t, 2, 10*time.Second); !slices.Equal(seqs(got), []uint64{1, 2}) {
		t.Fatalf("got %v", seqs(got))
	}
}

func listening(t *testing.T, url string) bool {
	var n int
	_ = pgConn(t, url).QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND query LIKE 'LISTEN%'`).Scan(&n)
	return n == 1
}

func TestPostgresConfigAndMissingSchema(t *testing.T) {
	url := pgtest.DB(t)
	pool, err := NewPostgresPool(testCtx(t, 10*time.Second), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := NewPostgres(testCtx(t, 10*time.Second), pool, PostgresConfig{Logger: testLogger(t)}); err == nil ||
		!contains(err.Error(), "apply realtime/pgmigrations") {
		t.Fatalf("without the schema: %v", err)
	}
	if _, err := NewPostgres(testCtx(t, 10*time.Second), pool, PostgresConfig{Stream: "a b"}); err == nil {
		t.Fatal("bad stream name accepted")
	}
	start := time.Now()
	if _, err := OpenPostgres(testCtx(t, 10*time.Second), "postgres://nobody@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", PostgresConfig{}); !isUnavail(err) {
		t.Fatalf("unreachable server: %v", err)
	}
	t.Logf("unreachable server refused after %v", time.Since(start))
	// Two streams on one database are independent.
	a := openPG(t, url, PostgresConfig{Stream: "one"})
	b := openPG(t, url, PostgresConfig{Stream: "two"})
	publish(t, a, ev("c", "x", ""))
	if acks := publish(t, b, ev("c", "x", "")); acks[0].Seq != 1 || acks[0].Duplicate {
		t.Fatalf("second stream: %+v", acks[0])
	}
	if a.Epoch() == b.Epoch() {
		t.Fatal("two streams share an epoch")
	}
}

func isUnavail(err error) bool { return errors.Is(err, ErrUnavailable) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// Last: the newest n events of one channel at or below a sequence, oldest first; the
// other channels' events and those above the bound are not in it; an error of fn ends
// it and is returned.
func TestPostgresLast(t *testing.T) {
	p := openPG(t, pgtest.DB(t), PostgresConfig{})
	var evs []*protocol.Event
	for i := range 30 {
		ch := "hist.a"
		if i%3 == 0 {
			ch = "hist.b"
		}
		evs = append(evs, &protocol.Event{ID: fmt.Sprintf("h-%d", i), Channel: ch, Data: []byte(fmt.Sprint(i))})
	}
	acks := publish(t, p, evs...)
	last := func(ch string, upTo uint64, n int) []string {
		t.Helper()
		var ids []string
		if err := p.Last(testCtx(t, 10*time.Second), ch, upTo, n, func(e *protocol.Event) error {
			if e.Channel != ch || e.Seq == 0 || (upTo > 0 && e.Seq > upTo) {
				t.Fatalf("event %+v for %s up to %d", e, ch, upTo)
			}
			ids = append(ids, e.ID)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := fmt.Sprint(last("hist.a", 0, 3)); got != "[h-26 h-28 h-29]" {
		t.Fatalf("newest 3 of hist.a: %s", got)
	}
	if got := fmt.Sprint(last("hist.b", acks[10].Seq, 2)); got != "[h-6 h-9]" {
		t.Fatalf("newest 2 of hist.b at or below seq %d: %s", acks[10].Seq, got)
	}
	if got := last("hist.b", 0, 100); len(got) != 10 || got[0] != "h-0" {
		t.Fatalf("all of hist.b: %v", got)
	}
	if got := last("hist.none", 0, 5); len(got) != 0 {
		t.Fatalf("an empty channel: %v", got)
	}
	if got := last("hist.a", 0, 0); len(got) != 0 {
		t.Fatalf("n 0: %v", got)
	}
	stop := errors.New("stop")
	calls := 0
	if err := p.Last(testCtx(t, 10*time.Second), "hist.a", 0, 5, func(*protocol.Event) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("fn's error: %v after %d calls", err, calls)
	}
	if err := p.Last(testCtx(t, 10*time.Second), "bad channel", 0, 5, func(*protocol.Event) error { return nil }); !errors.Is(err, protocol.ErrBadChannel) {
		t.Fatalf("bad channel: %v", err)
	}
}
