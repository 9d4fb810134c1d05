package inspect

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The Postgres fleet query's channels and table (realtime/pgmigrations/5_inspect.up.sql).
const (
	pgQueryChannel = "realtime_inspect"
	pgReplyChannel = "realtime_inspect_reply"
	// pgMaxAnswer bounds one instance's stored answer (a notification carries at
	// most 8000 bytes, so answers go through the table and only their ids are
	// notified).
	pgMaxAnswer = 1 << 20
	// pgPoll is how often a waiting query reads the answers without a notification
	// (the listener may be reconnecting): a lost notification costs latency, never
	// an answer.
	pgPoll = 250 * time.Millisecond
)

// Postgres asks the fleet over one PostgreSQL database, the Postgres bus's: a query
// is a NOTIFY on realtime_inspect (its id, the bucket and the query); every instance
// LISTENs there, answers with local into realtime_inspect_answers and NOTIFYs
// realtime_inspect_reply with the id; the asker answers for itself directly and
// collects the others' rows (DELETE ... RETURNING) until as many as expected arrived
// or the context ends.
type Postgres struct {
	pool   *pgxpool.Pool // owned by the caller
	bucket string        // instances of another bucket (namespace) ignore the query
	id     string        // this asker: it answers its own queries without a round trip
	local  Local
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	waiting map[string]chan struct{} // query id -> woken by its reply notifications
}

var _ Asker = (*Postgres)(nil)

// pgQuery is the notification's payload (well under the 8000 bytes: Match is bounded).
type pgQuery struct {
	ID     string `json:"id"`
	Bucket string `json:"bucket"`
	From   string `json:"from"`
	Query  Query  `json:"query"`
}

// NewPostgres LISTENs on a connection of its own (taken out of pool) and answers every
// query of bucket with local; when it returns, later queries of other instances reach
// it. The caller keeps ownership of pool and closes it after Close; the schema
// (realtime/pgmigrations) must be applied.
func NewPostgres(ctx context.Context, pool *pgxpool.Pool, bucket string, local Local, log *slog.Logger) (*Postgres, error) {
	if log == nil {
		log = slog.Default()
	}
	p := &Postgres{pool: pool, bucket: bucket, id: randomID(), local: local, log: log, waiting: map[string]chan struct{}{}}
	conn, err := p.listenConn(ctx)
	if err != nil {
		return nil, fmt.Errorf("inspect: listen: %w", err)
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.listen(conn)
	return p, nil
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// listenConn takes a connection out of the pool (Hijack: LISTEN never leaks into the
// pool) and LISTENs on both channels.
func (p *Postgres) listenConn(ctx context.Context) (*pgx.Conn, error) {
	pc, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, "LISTEN "+pgQueryChannel+"; LISTEN "+pgReplyChannel); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// listen owns the listening connection and reconnects it (queries sent while it was
// down are not answered by this instance; their askers see one answer fewer).
func (p *Postgres) listen(conn *pgx.Conn) {
	defer p.wg.Done()
	for failures := 0; ; {
		for {
			n, err := conn.WaitForNotification(p.ctx)
			if err != nil {
				if p.ctx.Err() == nil {
					p.log.Warn("inspect: postgres listener lost its connection, reconnecting", "err", err)
				}
				break
			}
			switch n.Channel {
			case pgQueryChannel:
				p.onQuery(n.Payload)
			case pgReplyChannel:
				p.onReply(n.Payload)
			}
		}
		_ = conn.Close(context.Background())
		for {
			if p.ctx.Err() != nil {
				return
			}
			ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
			c, err := p.listenConn(ctx)
			cancel()
			if err == nil {
				conn, failures = c, 0
				break
			}
			if failures++; failures == 1 || failures%20 == 0 {
				p.log.Warn("inspect: postgres listener: reconnect failed", "attempts", failures, "err", err)
			}
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// onQuery answers another instance's query of this bucket, off the listener's
// goroutine.
func (p *Postgres) onQuery(payload string) {
	var m pgQuery
	if err := json.Unmarshal([]byte(payload), &m); err != nil || m.Bucket != p.bucket || m.From == p.id || m.ID == "" ||
		m.Query.Normalize() != nil {
		return // not a query for this instance
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		a := p.local(m.Query)
		body, err := encodeBounded(a, pgMaxAnswer)
		if err != nil {
			p.log.Warn("inspect: answer", "err", err)
			return
		}
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
		defer cancel()
		// The notification is delivered at commit, when the row is visible.
		if _, err := p.pool.Exec(ctx, `WITH a AS (
			INSERT INTO realtime_inspect_answers (query, instance, body) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING)
			SELECT pg_notify($4, $1)`, m.ID, a.Instance, body, pgReplyChannel); err != nil && p.ctx.Err() == nil {
			p.log.Warn("inspect: reply", "err", err)
		}
	}()
}

// onReply wakes the query waiting for id, if it is this instance's.
func (p *Postgres) onReply(id string) {
	p.mu.Lock()
	ch := p.waiting[id]
	p.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Connections asks every instance. expect is how many answers to wait for (the live
// fleet's size; at least 1); it returns early once that many arrived. This instance
// answers first, directly; an error means the query could not be sent.
func (p *Postgres) Connections(ctx context.Context, q Query, expect int) (Result, error) {
	if err := q.Normalize(); err != nil {
		return Result{}, err
	}
	expect = min(max(expect, 1), MaxAnswers)
	m := pgQuery{ID: randomID(), Bucket: p.bucket, From: p.id, Query: q}
	payload, err := json.Marshal(m)
	if err != nil {
		return Result{}, err
	}
	wake := make(chan struct{}, 1)
	p.mu.Lock()
	p.waiting[m.ID] = wake
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.waiting, m.ID)
		p.mu.Unlock()
		// Late answers and those of a minute ago that nobody read.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_, _ = p.pool.Exec(ctx, `DELETE FROM realtime_inspect_answers WHERE query = $1 OR at < now() - interval '1 minute'`, m.ID)
	}()
	res := Result{Expected: expect, FleetWide: true}
	seen := map[string]bool{}
	add := func(a Answer) {
		if a.Instance == "" || seen[a.Instance] || len(res.Answers) >= MaxAnswers {
			return
		}
		seen[a.Instance] = true
		if len(a.Connections) > MaxPerInstance {
			a.Connections = a.Connections[:MaxPerInstance]
		}
		res.Answers = append(res.Answers, a)
	}
	if expect > 1 {
		if _, err := p.pool.Exec(ctx, "SELECT pg_notify($1, $2)", pgQueryChannel, string(payload)); err != nil {
			return Result{}, fmt.Errorf("inspect: ask: %w", err)
		}
	}
	add(p.local(q))
	tick := time.NewTicker(pgPoll)
	defer tick.Stop()
	for len(res.Answers) < expect {
		select {
		case <-ctx.Done():
			return sorted(res), nil
		case <-wake:
		case <-tick.C:
		}
		answers, err := p.collect(ctx, m.ID)
		if err != nil {
			if ctx.Err() != nil {
				return sorted(res), nil
			}
			p.log.Warn("inspect: read answers", "err", err)
			continue
		}
		for _, a := range answers {
			add(a)
		}
	}
	return sorted(res), nil
}

// collect takes the stored answers of query id.
func (p *Postgres) collect(ctx context.Context, id string) ([]Answer, error) {
	rows, err := p.pool.Query(ctx, `DELETE FROM realtime_inspect_answers WHERE query = $1 RETURNING body`, id)
	if err != nil {
		return nil, err
	}
	bodies, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, err
	}
	out := make([]Answer, 0, len(bodies))
	for _, b := range bodies {
		var a Answer
		if json.Unmarshal(b, &a) == nil {
			out = append(out, a)
		}
	}
	return out, nil
}

// Close stops answering queries and waits for the answers being sent.
func (p *Postgres) Close() error {
	p.cancel()
	p.wg.Wait()
	return nil
}
