package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"encore.app/realtime/protocol"
)

// pgPublish is one Publish call waiting for the writer.
type pgPublish struct {
	ctx    context.Context
	evs    []*protocol.Event
	bodies [][]byte
	done   chan pgResult // buffered 1: the writer never blocks on it
}

type pgResult struct {
	acks []Ack
	err  error
}

// Publish implements Bus with JetStream's contract: invalid events fail the whole call
// before anything is written (errors wrap protocol.ErrBadChannel or
// protocol.ErrBadEvent); missing IDs (a NUID) and TS (now, unix ms) are filled in,
// in place, so that a caller retrying after an error is deduplicated. The events are
// appended by the writer goroutine, in one transaction with whatever other Publish
// calls are waiting; the acks come after the commit. On an error (wrapping
// ErrUnavailable for connectivity) the events may have been appended: retry with the
// same IDs.
func (p *Postgres) Publish(ctx context.Context, evs []*protocol.Event) ([]Ack, error) {
	if p.isClosed() {
		return nil, fmt.Errorf("bus: publish: %w", ErrClosed)
	}
	if len(evs) == 0 {
		return nil, nil
	}
	if err := prepareEvents(evs, pgMaxChannel); err != nil {
		return nil, err
	}
	r := &pgPublish{ctx: ctx, evs: evs, bodies: make([][]byte, len(evs)), done: make(chan pgResult, 1)}
	for i, ev := range evs {
		r.bodies[i] = appendBody(nil, ev)
	}
	select {
	case p.reqs <- r:
	case <-ctx.Done():
		return nil, p.wrap("publish", ctx.Err())
	case <-p.ctx.Done():
		return nil, fmt.Errorf("bus: publish: %w", ErrClosed)
	}
	p.pending.Add(1)
	defer p.pending.Add(-1)
	select {
	case res := <-r.done:
		return res.acks, res.err
	case <-ctx.Done():
		return nil, p.wrap("publish", ctx.Err())
	case <-p.ctx.Done():
		return nil, fmt.Errorf("bus: publish: %w", ErrClosed)
	}
}

// pgBatch is what one append transaction carries: live requests and their events.
type pgBatch struct {
	live   []*pgPublish
	evs    []*protocol.Event
	bodies [][]byte
	bytes  int        // of bodies
	carry  *pgPublish // taken from the queue but over a bound: the next batch's first
}

// full reports whether r would take b over MaxBatch events or pgMaxBatchBytes.
func (p *Postgres) full(b *pgBatch, r *pgPublish) bool {
	if len(b.evs) == 0 {
		return false // a single call is never split
	}
	n := 0
	for _, body := range r.bodies {
		n += len(body)
	}
	return len(b.evs)+len(r.evs) > p.cfg.MaxBatch || b.bytes+n > pgMaxBatchBytes
}

// add appends r to b, or answers it at once if its caller gave up.
func (p *Postgres) add(b *pgBatch, r *pgPublish) {
	if err := r.ctx.Err(); err != nil {
		r.done <- pgResult{err: p.wrap("publish", err)}
		return
	}
	b.live = append(b.live, r)
	b.evs = append(b.evs, r.evs...)
	b.bodies = append(b.bodies, r.bodies...)
	for _, body := range r.bodies {
		b.bytes += len(body)
	}
}

// gather adds what is queued, without waiting, up to MaxBatch events and
// pgMaxBatchBytes.
func (p *Postgres) gather(b *pgBatch) {
	for b.carry == nil && len(b.evs) < p.cfg.MaxBatch && b.bytes < pgMaxBatchBytes {
		select {
		case r := <-p.reqs:
			if p.full(b, r) {
				b.carry = r
				return
			}
			p.add(b, r)
		default:
			return
		}
	}
}

// writer appends what Publish calls queue: it takes one request and whatever else is
// queued, locks the stream, takes what was queued while it waited for the lock (the
// other instances' commits), and commits them all in one transaction. Batching costs
// an idle bus no latency and grows with contention.
func (p *Postgres) writer() {
	defer p.wg.Done()
	var carry *pgPublish
	for {
		b := &pgBatch{}
		if carry != nil {
			p.add(b, carry)
		} else {
			select {
			case <-p.ctx.Done():
				p.drainClosed()
				return
			case r := <-p.reqs:
				p.add(b, r)
			}
		}
		p.gather(b)
		if len(b.live) > 0 {
			p.commit(b)
		}
		carry = b.carry
	}
}

// drainClosed answers every queued request with ErrClosed.
func (p *Postgres) drainClosed() {
	for {
		select {
		case r := <-p.reqs:
			r.done <- pgResult{err: fmt.Errorf("bus: publish: %w", ErrClosed)}
		default:
			return
		}
	}
}

// commit appends b and answers each of its requests.
func (p *Postgres) commit(b *pgBatch) {
	ctx, cancel := context.WithTimeout(p.ctx, pgWriteTimeout)
	defer cancel()
	var acks []Ack
	var err error
	for attempt := 0; ; attempt++ {
		var sent bool
		acks, sent, err = p.appendTx(ctx, b)
		// Retry what certainly did not commit (a pooled connection that died with a
		// restarted server fails on first use), while the callers still wait.
		if err == nil || sent || attempt >= 3 || !errors.Is(classify(err), ErrUnavailable) || ctx.Err() != nil ||
			!anyWaiting(b.live) || !sleepCtx(ctx, time.Duration(attempt+1)*50*time.Millisecond) {
			break
		}
	}
	if err != nil {
		err = p.wrap("publish", err)
		for _, r := range b.live {
			r.done <- pgResult{err: err}
		}
		return
	}
	for _, r := range b.live {
		r.done <- pgResult{acks: acks[:len(r.evs):len(r.evs)]}
		acks = acks[len(r.evs):]
	}
}

func anyWaiting(rs []*pgPublish) bool {
	for _, r := range rs {
		if r.ctx.Err() == nil {
			return true
		}
	}
	return false
}

// errNoStream: the stream's row is gone (deleted); appendTx recreates it.
var errNoStream = errors.New("stream row missing")

// appendTx appends b in one transaction, in two round trips: (begin, lock the stream
// row), then, after gathering what was queued while waiting for the lock, (one
// statement that looks up the IDs within the dedup window, numbers and inserts the
// new events and advances the counters; notify; commit). sent reports that the
// commit was sent (the outcome of a failure after that is unknown: the events may be
// stored; a retry with the same IDs is deduplicated).
func (p *Postgres) appendTx(ctx context.Context, b *pgBatch) (acks []Ack, sent bool, err error) {
	for attempt := 0; attempt < 2; attempt++ {
		acks, sent, err = p.appendOnce(ctx, b)
		if !errors.Is(err, errNoStream) {
			return acks, sent, err
		}
		p.log.Warn("bus: stream missing, recreating", "stream", p.cfg.Stream)
		if _, err = p.ensureStream(ctx); err != nil {
			return nil, false, err
		}
	}
	return nil, false, err
}

// appendSQL runs under the stream row's lock (taken by the statement before it, so
// its snapshot holds every earlier commit). in: the batch with its order; old: IDs
// appended within the window; firsts: the first copy of each ID in the batch; fresh:
// the first copies not appended before, numbered in batch order from last_seq. It
// returns, per event in order, its seq and whether it is a duplicate.
const appendSQL = `WITH
s AS (SELECT last_seq, total_bytes FROM realtime_streams WHERE name = $1),
inp AS (SELECT u.id, u.channel, u.body, u.size, u.ord
	FROM unnest($2::text[], $3::text[], $4::bytea[], $5::bigint[]) WITH ORDINALITY AS u(id, channel, body, size, ord)),
old AS (SELECT e.id, min(e.seq) AS seq FROM realtime_events e
	WHERE e.stream = $1 AND e.id = ANY($2) AND e.at > clock_timestamp() - $6::bigint * interval '1 microsecond'
	GROUP BY e.id),
firsts AS (SELECT inp.*, min(inp.ord) OVER (PARTITION BY inp.id) AS first_ord FROM inp),
fresh AS (SELECT f.id, f.channel, f.body, f.size, f.ord,
		row_number() OVER (ORDER BY f.ord) AS rn,
		sum(f.size) OVER (ORDER BY f.ord) - f.size AS before
	FROM firsts f WHERE f.ord = f.first_ord AND NOT EXISTS (SELECT 1 FROM old WHERE old.id = f.id)),
ins AS (INSERT INTO realtime_events (stream, seq, id, channel, body, at, start_bytes)
	SELECT $1, s.last_seq + fr.rn, fr.id, fr.channel, fr.body, clock_timestamp(), s.total_bytes + fr.before
	FROM fresh fr CROSS JOIN s),
upd AS (UPDATE realtime_streams SET
		last_seq = last_seq + (SELECT count(*) FROM fresh),
		total_bytes = total_bytes + (SELECT COALESCE(sum(size), 0) FROM fresh)
	WHERE name = $1)
SELECT COALESCE(o.seq, s.last_seq + fr.rn), (o.seq IS NOT NULL OR fi.ord <> fi.first_ord)
FROM firsts fi CROSS JOIN s
LEFT JOIN old o ON o.id = fi.id
LEFT JOIN fresh fr ON fr.id = fi.id
ORDER BY fi.ord`

func (p *Postgres) appendOnce(ctx context.Context, b *pgBatch) (acks []Ack, sent bool, err error) {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, false, err
	}
	defer conn.Release()
	inTx := false
	defer func() {
		if inTx && err != nil {
			// Leave no open transaction on a connection that goes back to the pool.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			if _, rerr := conn.Exec(rctx, "ROLLBACK"); rerr != nil {
				_ = conn.Conn().Close(rctx)
			}
		}
	}()
	lock := &pgx.Batch{}
	lock.Queue("BEGIN")
	lock.Queue(`SELECT epoch FROM realtime_streams WHERE name = $1 FOR UPDATE`, p.cfg.Stream)
	br := conn.SendBatch(ctx, lock)
	inTx = true
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, false, err
	}
	var epoch string
	if err := br.QueryRow().Scan(&epoch); err != nil {
		br.Close()
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, false, errNoStream
		}
		return nil, false, err
	}
	if err := br.Close(); err != nil {
		return nil, false, err
	}
	p.gather(b) // what queued while we waited for the lock

	evs, bodies := b.evs, b.bodies
	ids := make([]string, len(evs))
	chans := make([]string, len(evs))
	sizes := make([]int64, len(evs))
	for i, ev := range evs {
		ids[i], chans[i] = ev.ID, ev.Channel
		sizes[i] = int64(len(bodies[i]) + len(ev.Channel) + len(ev.ID) + pgEventOverhead)
	}
	app := &pgx.Batch{}
	app.Queue(appendSQL, p.cfg.Stream, ids, chans, bodies, sizes, p.cfg.DupWindow.Microseconds())
	app.Queue(`SELECT pg_notify($1, last_seq::text || ' ' || name) FROM realtime_streams WHERE name = $2`, pgNotifyChannel, p.cfg.Stream)
	app.Queue("COMMIT")
	br = conn.SendBatch(ctx, app)
	sent = true
	defer func() {
		if cerr := br.Close(); err == nil && cerr != nil {
			acks, err = nil, cerr
		}
		if err == nil {
			inTx = false
		}
	}()
	rows, err := br.Query()
	if err != nil {
		return nil, true, err
	}
	acks = make([]Ack, 0, len(evs))
	for rows.Next() {
		var seq int64
		var dup bool
		if err := rows.Scan(&seq, &dup); err != nil {
			rows.Close()
			return nil, true, err
		}
		if len(acks) < len(evs) {
			acks = append(acks, Ack{ID: evs[len(acks)].ID, Seq: uint64(seq), Duplicate: dup})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, true, err
	}
	if len(acks) != len(evs) {
		return nil, true, fmt.Errorf("bus: append: %d acks for %d events", len(acks), len(evs))
	}
	if _, err := br.Exec(); err != nil { // notify
		return nil, true, err
	}
	if _, err := br.Exec(); err != nil { // commit
		return nil, true, err
	}
	p.setEpoch(epoch)
	p.appends.Add(1)
	return acks, true, nil
}
