package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nuid"

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
	for i, ev := range evs {
		if ev == nil {
			return nil, fmt.Errorf("bus: publish: event %d: %w: nil", i, protocol.ErrBadEvent)
		}
		if err := checkEvent(ev); err != nil {
			return nil, fmt.Errorf("bus: publish: event %d: %w", i, err)
		}
		if len(ev.Channel) > pgMaxChannel {
			return nil, fmt.Errorf("bus: publish: event %d: %w: %d bytes, limit %d", i, protocol.ErrBadChannel, len(ev.Channel), pgMaxChannel)
		}
	}
	now := time.Now().UnixMilli()
	r := &pgPublish{ctx: ctx, evs: evs, bodies: make([][]byte, len(evs)), done: make(chan pgResult, 1)}
	for i, ev := range evs {
		if ev.ID == "" {
			ev.ID = nuid.Next()
		}
		if ev.TS == 0 {
			ev.TS = now
		}
		r.bodies[i] = appendBody(nil, ev)
	}
	select {
	case p.reqs <- r:
	case <-ctx.Done():
		return nil, p.wrap("publish", ctx.Err())
	case <-p.ctx.Done():
		return nil, fmt.Errorf("bus: publish: %w", ErrClosed)
	}
	select {
	case res := <-r.done:
		return res.acks, res.err
	case <-ctx.Done():
		return nil, p.wrap("publish", ctx.Err())
	case <-p.ctx.Done():
		return nil, fmt.Errorf("bus: publish: %w", ErrClosed)
	}
}

// writer appends what Publish calls queue: it takes one request, then whatever else
// is already queued (up to MaxBatch events, no waiting), and commits them in one
// transaction. Batching costs an idle bus no latency.
func (p *Postgres) writer() {
	defer p.wg.Done()
	var carry *pgPublish
	for {
		var batch []*pgPublish
		if carry != nil {
			batch, carry = append(batch, carry), nil
		} else {
			select {
			case <-p.ctx.Done():
				p.drainClosed()
				return
			case r := <-p.reqs:
				batch = append(batch, r)
			}
		}
		n := len(batch[0].evs)
	fill:
		for n < p.cfg.MaxBatch {
			select {
			case r := <-p.reqs:
				if n+len(r.evs) > p.cfg.MaxBatch {
					carry = r
					break fill
				}
				batch = append(batch, r)
				n += len(r.evs)
			default:
				break fill
			}
		}
		p.commit(batch)
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

// commit appends the live requests of batch and answers each.
func (p *Postgres) commit(batch []*pgPublish) {
	live := batch[:0]
	var evs []*protocol.Event
	var bodies [][]byte
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- pgResult{err: p.wrap("publish", err)}
			continue
		}
		live = append(live, r)
		evs = append(evs, r.evs...)
		bodies = append(bodies, r.bodies...)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(p.ctx, pgWriteTimeout)
	defer cancel()
	var acks []Ack
	var err error
	for attempt := 0; ; attempt++ {
		var sent bool
		acks, sent, err = p.appendTx(ctx, evs, bodies)
		// Retry what certainly did not commit (a pooled connection that died with a
		// restarted server fails on first use), while the callers still wait.
		if err == nil || sent || attempt >= 3 || !errors.Is(classify(err), ErrUnavailable) || ctx.Err() != nil ||
			!anyWaiting(live) || !sleepCtx(ctx, time.Duration(attempt+1)*50*time.Millisecond) {
			break
		}
	}
	if err != nil {
		err = p.wrap("publish", err)
		for _, r := range live {
			r.done <- pgResult{err: err}
		}
		return
	}
	for _, r := range live {
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

// appendTx appends evs in one transaction, in two round trips: (begin, lock the
// stream row, look up the IDs within the dedup window), then (insert, advance the
// counters, notify, commit). sent reports that the commit was sent (the outcome of a
// failure after that is unknown: the events may be stored).
func (p *Postgres) appendTx(ctx context.Context, evs []*protocol.Event, bodies [][]byte) (acks []Ack, sent bool, err error) {
	for attempt := 0; attempt < 2; attempt++ {
		acks, sent, err = p.appendOnce(ctx, evs, bodies)
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

func (p *Postgres) appendOnce(ctx context.Context, evs []*protocol.Event, bodies [][]byte) (acks []Ack, sent bool, err error) {
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

	ids := make([]string, len(evs))
	for i, ev := range evs {
		ids[i] = ev.ID
	}
	window := p.cfg.DupWindow.Microseconds()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(`SELECT epoch, last_seq, total_bytes FROM realtime_streams WHERE name = $1 FOR UPDATE`, p.cfg.Stream)
	b.Queue(`SELECT id, seq FROM realtime_events WHERE stream = $1 AND id = ANY($2)
		AND at > clock_timestamp() - $3::bigint * interval '1 microsecond'`, p.cfg.Stream, ids, window)
	br := conn.SendBatch(ctx, b)
	inTx = true
	if _, err := br.Exec(); err != nil {
		br.Close()
		return nil, false, err
	}
	var epoch string
	var last, total int64
	if err := br.QueryRow().Scan(&epoch, &last, &total); err != nil {
		br.Close()
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, false, errNoStream
		}
		return nil, false, err
	}
	dups := map[string]uint64{}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return nil, false, err
	}
	for rows.Next() {
		var id string
		var seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			rows.Close()
			br.Close()
			return nil, false, err
		}
		if old, ok := dups[id]; !ok || uint64(seq) < old {
			dups[id] = uint64(seq)
		}
	}
	rows.Close()
	if err := br.Close(); err != nil {
		return nil, false, err
	}
	p.setEpoch(epoch)

	acks = make([]Ack, len(evs))
	var seqs, starts []int64
	var nIDs, nChans []string
	var nBodies [][]byte
	for i, ev := range evs {
		if seq, ok := dups[ev.ID]; ok {
			acks[i] = Ack{ID: ev.ID, Seq: seq, Duplicate: true}
			continue
		}
		last++
		dups[ev.ID] = uint64(last) // a second copy in this batch is a duplicate of this one
		acks[i] = Ack{ID: ev.ID, Seq: uint64(last)}
		seqs = append(seqs, last)
		starts = append(starts, total)
		total += int64(len(bodies[i]) + len(ev.Channel) + len(ev.ID) + pgEventOverhead)
		nIDs, nChans, nBodies = append(nIDs, ev.ID), append(nChans, ev.Channel), append(nBodies, bodies[i])
	}
	if len(seqs) == 0 { // all duplicates: nothing to write
		_, err := conn.Exec(ctx, "COMMIT")
		inTx = err != nil
		return acks, true, err
	}
	b = &pgx.Batch{}
	b.Queue(`INSERT INTO realtime_events (stream, seq, id, channel, body, at, start_bytes)
		SELECT $1, u.seq, u.id, u.channel, u.body, clock_timestamp(), u.start
		FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bytea[], $6::bigint[]) AS u(seq, id, channel, body, start)`,
		p.cfg.Stream, seqs, nIDs, nChans, nBodies, starts)
	b.Queue(`UPDATE realtime_streams SET last_seq = $2, total_bytes = $3 WHERE name = $1`, p.cfg.Stream, last, total)
	b.Queue(`SELECT pg_notify($1, $2)`, pgNotifyChannel, strconv.FormatInt(last, 10)+" "+p.cfg.Stream)
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, true, err
	}
	inTx = false
	p.appends.Add(1)
	return acks, true, nil
}
