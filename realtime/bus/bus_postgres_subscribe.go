package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"encore.app/realtime/protocol"
)

// listen wakes the subscriptions whenever the listener signals: a notification for
// this stream, or a reconnect (notifications sent while the connection was down are
// lost; the subscriptions' reads catch up).
func (p *Postgres) listen() {
	defer p.wg.Done()
	for {
		select {
		case <-p.lis.C:
			p.wake.wake()
		case <-p.ctx.Done():
			return
		}
	}
}

// Subscribe implements Bus: every event with seq > after, then live events, in order,
// on one goroutine per subscription. It reads the table whenever the listener is
// notified of a commit (or reconnects), and every PollInterval regardless, until it
// has read everything; a missed or coalesced notification delays, never loses, an
// event. Gaps left by retention are skipped. A failing read is retried with a backoff
// from the last delivered sequence. If the stream is recreated (epoch change), the
// caller must cancel and subscribe again from the new stream's head.
func (p *Postgres) Subscribe(ctx context.Context, after uint64, h Handler) error {
	if h == nil {
		return errors.New("bus: subscribe: nil handler")
	}
	if p.isClosed() {
		return fmt.Errorf("bus: subscribe: %w", ErrClosed)
	}
	if err := p.pool.Ping(ctx); err != nil {
		return p.wrap("subscribe", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.ctx, cancel)
	if !p.goRun(func() {
		defer cancel()
		defer stop()
		p.deliver(runCtx, after, h)
	}) {
		stop()
		cancel()
		return fmt.Errorf("bus: subscribe: %w", ErrClosed)
	}
	return nil
}

func (p *Postgres) deliver(ctx context.Context, last uint64, h Handler) {
	tick := time.NewTicker(p.cfg.PollInterval)
	defer tick.Stop()
	failures := 0
	for {
		wake := p.wake.wait() // before reading: a commit during the read wakes us again
		for {
			n, err := p.readLive(ctx, &last, h)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				failures++
				if failures == 1 || failures%20 == 0 {
					p.log.Warn("bus: live read failed, retrying", "after", last, "attempts", failures, "err", err)
				}
				if !sleepCtx(ctx, backoff(failures)) {
					return
				}
				continue
			}
			failures = 0
			if n < pgReadPage {
				break
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-tick.C:
		}
	}
}

// readLive delivers one page of events after *last and advances it. The page is read
// whole before h runs, so no connection is held while the handler works.
func (p *Postgres) readLive(ctx context.Context, last *uint64, h Handler) (int, error) {
	type row struct {
		seq  int64
		ch   string
		body []byte
	}
	rows, err := p.pool.Query(ctx, `SELECT seq, channel, body FROM realtime_events
		WHERE stream = $1 AND seq > $2 ORDER BY seq LIMIT $3`, p.cfg.Stream, int64(*last), pgReadPage)
	if err != nil {
		return 0, err
	}
	page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.seq, &x.ch, &x.body)
		return x, err
	})
	if err != nil {
		return 0, err
	}
	for _, r := range page {
		if uint64(r.seq) <= *last {
			continue
		}
		if ctx.Err() != nil {
			return len(page), ctx.Err()
		}
		*last = uint64(r.seq)
		if ev, ok := p.decode(uint64(r.seq), r.ch, r.body); ok {
			h(ev)
		}
	}
	return len(page), nil
}

// decode turns a stored row into an event; the channel column is authoritative.
// Failures are counted and logged; the row is skipped.
func (p *Postgres) decode(seq uint64, ch string, body []byte) (*protocol.Event, bool) {
	e, err := decodeBody(seq, ch, body)
	if err != nil {
		n := p.malformed.Add(1)
		p.log.Warn("bus: skipping malformed event", "seq", seq, "channel", ch, "err", err, "malformed_total", n)
		return nil, false
	}
	return e, true
}
