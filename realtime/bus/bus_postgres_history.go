package bus

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"

	"encore.app/realtime/protocol"
)

// Last implements Bus: one query on the (stream, channel, seq) index, newest first,
// reversed into seq order.
func (p *Postgres) Last(ctx context.Context, channel string, upTo uint64, n int, fn func(*protocol.Event) error) error {
	if p.isClosed() {
		return fmt.Errorf("bus: last: %w", ErrClosed)
	}
	if err := protocol.ValidateChannel(channel, pgMaxChannel); err != nil {
		return fmt.Errorf("bus: last: %w", err)
	}
	if n <= 0 {
		return nil
	}
	if upTo == 0 || upTo > math.MaxInt64 {
		upTo = math.MaxInt64
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.ctx, cancel)()
	type row struct {
		seq  int64
		body []byte
	}
	rows, err := p.pool.Query(ctx, `SELECT seq, body FROM realtime_events
		WHERE stream = $1 AND channel = $2 AND seq <= $3 ORDER BY seq DESC LIMIT $4`,
		p.cfg.Stream, channel, int64(upTo), n)
	if err != nil {
		return p.wrap("last", err)
	}
	page, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		err := r.Scan(&x.seq, &x.body)
		return x, err
	})
	if err != nil {
		return p.wrap("last", err)
	}
	slices.Reverse(page)
	for _, r := range page {
		if ev, ok := p.decode(uint64(r.seq), channel, r.body); ok {
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	return nil
}
