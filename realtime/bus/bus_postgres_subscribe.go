package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"encore.app/realtime/protocol"
)

// listenConn takes a connection out of the pool (Hijack: it is the bus's until
// closed, and LISTEN never leaks into the pool) and LISTENs on it.
func (p *Postgres) listenConn(ctx context.Context) (*pgx.Conn, error) {
	pc, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, "LISTEN "+pgNotifyChannel); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

// listen owns the listening connection: every notification for this stream wakes the
// subscriptions, and so does every reconnect (notifications sent while the
// connection was down are lost; the subscriptions' reads catch up).
func (p *Postgres) listen(conn *pgx.Conn) {
	defer p.wg.Done()
	failures := 0
	for {
		for {
			n, err := conn.WaitForNotification(p.ctx)
			if err != nil {
				if p.ctx.Err() == nil {
					p.log.Warn("bus: postgres listener lost its connection, reconnecting", "err", err)
				}
				break
			}
			if _, stream, ok := strings.Cut(n.Payload, " "); ok && stream == p.cfg.Stream {
				p.wake.wake()
			}
		}
		p.connected.Store(false)
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
			failures++
			if failures == 1 || failures%20 == 0 {
				p.log.Warn("bus: postgres listener: reconnect failed", "attempts", failures, "err", err)
			}
			// At most a second: Connected (the breaker's probe) is false until then.
			if !sleepCtx(p.ctx, min(backoff(failures), time.Second)) {
				return
			}
		}
		p.connected.Store(true)
		p.log.Info("bus: postgres listener reconnected")
		p.wake.wake()
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
	var w wireEvent
	err := json.Unmarshal(body, &w)
	if err == nil && w.Channel != "" && w.Channel != ch {
		err = fmt.Errorf("body channel %q differs from the row's %q", w.Channel, ch)
	}
	if err != nil {
		n := p.malformed.Add(1)
		p.log.Warn("bus: skipping malformed event", "seq", seq, "channel", ch, "err", err, "malformed_total", n)
		return nil, false
	}
	return &protocol.Event{ID: w.ID, Seq: seq, Channel: ch, Type: w.Type, Data: w.Data, TS: w.TS}, true
}
