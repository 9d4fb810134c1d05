package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"encore.app/realtime/protocol"
)

// Replay reads seq windows: each query takes the channels' events of one range of
// sequences, in order, from the (stream, channel, seq) index. A window that matched
// few events doubles the next one, a crowded one halves it, so that a sparse channel
// over a long range costs few queries and no query returns or sorts more than a few
// thousand rows.
const (
	replayWindowMin  = 1 << 10
	replayWindowMax  = 1 << 22
	replayWindowFill = 2000 // matches above which the window shrinks
)

// Replay implements Bus with JetStream's contract: every retained event on one of
// channels with after < seq <= upTo, in sequence order, never waiting for new ones;
// fn's error is returned as is; bad channel names wrap protocol.ErrBadChannel. Events
// removed by retention while the replay runs are skipped (like JetStream's).
func (p *Postgres) Replay(ctx context.Context, channels []string, after, upTo uint64, fn func(*protocol.Event) error) error {
	if p.isClosed() {
		return fmt.Errorf("bus: replay: %w", ErrClosed)
	}
	if upTo <= after || len(channels) == 0 {
		return nil
	}
	uniq, err := replayChannels(channels, pgMaxChannel)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.ctx, cancel)()

	// Nothing at or below the head exists: bound the range by it.
	var head int64
	if err := p.pool.QueryRow(ctx, `SELECT last_seq FROM realtime_streams WHERE name = $1`, p.cfg.Stream).Scan(&head); err != nil && err != pgx.ErrNoRows {
		return p.wrap("replay", err)
	}
	upTo = min(upTo, uint64(max(head, 0)))
	type row struct {
		seq  int64
		ch   string
		body []byte
	}
	window := uint64(replayWindowMin)
	for from := after; from < upTo; {
		if err := ctx.Err(); err != nil {
			return p.wrap("replay", err)
		}
		to := min(upTo, from+window)
		rows, err := p.pool.Query(ctx, `SELECT seq, channel, body FROM realtime_events
			WHERE stream = $1 AND channel = ANY($2) AND seq > $3 AND seq <= $4 ORDER BY seq`,
			p.cfg.Stream, uniq, int64(from), int64(to))
		if err != nil {
			return p.wrap("replay", err)
		}
		page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.seq, &x.ch, &x.body)
			return x, err
		})
		if err != nil {
			return p.wrap("replay", err)
		}
		for _, r := range page {
			if ev, ok := p.decode(uint64(r.seq), r.ch, r.body); ok {
				if err := fn(ev); err != nil {
					return err
				}
			}
		}
		switch {
		case len(page) > replayWindowFill && window > replayWindowMin:
			window /= 2
		case len(page) < replayWindowFill/4 && window < replayWindowMax:
			window *= 2
		}
		from = to
	}
	return nil
}

// pruner runs retention every PruneInterval until Close.
func (p *Postgres) pruner() {
	defer p.wg.Done()
	if p.cfg.MaxAge == 0 && p.cfg.MaxBytes == 0 {
		return
	}
	t := time.NewTicker(p.cfg.PruneInterval)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
		}
		if _, err := p.prune(p.ctx); err != nil && p.ctx.Err() == nil {
			failures++
			if failures == 1 || failures%60 == 0 {
				p.log.Warn("bus: retention failed, retrying", "attempts", failures, "err", err)
			}
			continue
		}
		failures = 0
	}
}

// prune deletes the events past retention, oldest first, in bounded deletes (each
// looks at the oldest pgPruneBatch rows only), at most pgPruneBatches per call. One
// instance at a time prunes a stream (a transaction-level advisory lock; the others
// skip their turn). It returns the number of events deleted.
func (p *Postgres) prune(ctx context.Context) (int64, error) {
	var minStart *int64
	var ageUS *int64
	if p.cfg.MaxAge > 0 {
		us := p.cfg.MaxAge.Microseconds()
		ageUS = &us
	}
	var deleted int64
	for range pgPruneBatches {
		var n int64
		err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
			var locked bool
			if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, p.lockKey).Scan(&locked); err != nil || !locked {
				return err
			}
			if p.cfg.MaxBytes > 0 {
				var total int64
				if err := tx.QueryRow(ctx, `SELECT total_bytes FROM realtime_streams WHERE name = $1`, p.cfg.Stream).Scan(&total); err != nil {
					if err == pgx.ErrNoRows {
						return nil
					}
					return err
				}
				t := total - p.cfg.MaxBytes
				minStart = &t
			}
			tag, err := tx.Exec(ctx, `DELETE FROM realtime_events WHERE stream = $1 AND seq IN (
				SELECT o.seq FROM (SELECT seq, start_bytes, at FROM realtime_events WHERE stream = $1
					ORDER BY seq LIMIT $2) o
				WHERE o.start_bytes < $3::bigint
					OR o.at < clock_timestamp() - $4::bigint * interval '1 microsecond')`,
				p.cfg.Stream, pgPruneBatch, minStart, ageUS)
			n = tag.RowsAffected()
			return err
		})
		if err != nil {
			return deleted, p.wrap("retention", err)
		}
		deleted += n
		if n < pgPruneBatch {
			break
		}
	}
	return deleted, nil
}
