// Package pglisten keeps one Postgres connection LISTENing on a channel and turns its
// notifications into wake-ups, for the stores that reload on a change (flags, fleet
// health, the Postgres bus). A wake-up carries nothing: the receiver reads the table, so coalesced or
// lost notifications (while the connection is down) lose nothing as long as the
// receiver also reads after every wake-up the listener sends on reconnect.
//
// StartFunc is the variant for a receiver that needs the payloads themselves (the
// presence store: which channel changed, or the change itself): each notification's
// payload goes to a callback, and C signals reconnects only.
package pglisten

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Listener signals C after each notification on its channel whose payload it
// matches, and after each reconnect. C has capacity 1 and
// coalesces; it is never closed. Close stops the listener and waits for it.
type Listener struct {
	C <-chan struct{}

	c          chan struct{}
	pool       *pgxpool.Pool
	channel    string
	match      func(payload string) bool
	log        *slog.Logger
	connected  atomic.Bool
	reconnects atomic.Uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

// Start opens the listening connection (a connection hijacked from pool, so LISTEN
// never leaks into it) and starts the listener goroutine. ctx bounds the first
// connection only. It matches the notifications whose payload is payload (any
// payload when empty).
func Start(ctx context.Context, pool *pgxpool.Pool, channel, payload string, log *slog.Logger) (*Listener, error) {
	return StartMatch(ctx, pool, channel, func(p string) bool { return payload == "" || p == payload }, log)
}

// StartMatch is Start with a payload filter: match (called on the listener's
// goroutine) reports whether a notification's payload is one to signal.
func StartMatch(ctx context.Context, pool *pgxpool.Pool, channel string, match func(payload string) bool, log *slog.Logger) (*Listener, error) {
	c := make(chan struct{}, 1)
	l := &Listener{C: c, c: c, pool: pool, channel: channel, match: match, log: log}
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, err
	}
	l.connected.Store(true)
	runCtx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.wg.Add(1)
	go l.run(runCtx, conn)
	return l, nil
}

// StartFunc is Start for a receiver of payloads: fn is called on the listener's
// goroutine with the payload of every notification on channel, in the order Postgres
// delivers them, and must not block (hand the payload to a goroutine of the
// receiver's; when that falls behind, drop and read again, as after a reconnect). C
// signals after each reconnect only: the notifications sent while the connection was
// down are lost, and the receiver reads what they would have carried.
func StartFunc(ctx context.Context, pool *pgxpool.Pool, channel string, fn func(payload string), log *slog.Logger) (*Listener, error) {
	return StartMatch(ctx, pool, channel, func(p string) bool { fn(p); return false }, log)
}

// Connected reports whether the listening connection is up.
func (l *Listener) Connected() bool { return l.connected.Load() }

// Reconnects counts the connections re-established after a loss.
func (l *Listener) Reconnects() uint64 { return l.reconnects.Load() }

// Close stops the listener and closes its connection. Idempotent.
func (l *Listener) Close() {
	l.once.Do(func() {
		l.cancel()
		l.wg.Wait()
	})
}

func (l *Listener) connect(ctx context.Context) (*pgx.Conn, error) {
	pc, err := l.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	conn := pc.Hijack()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		_ = conn.Close(context.Background())
		return nil, err
	}
	return conn, nil
}

func (l *Listener) signal() {
	select {
	case l.c <- struct{}{}:
	default:
	}
}

func (l *Listener) run(ctx context.Context, conn *pgx.Conn) {
	defer l.wg.Done()
	failures := 0
	for {
		for {
			n, err := conn.WaitForNotification(ctx)
			if err != nil {
				if ctx.Err() == nil {
					l.log.Warn("postgres listener lost its connection, reconnecting", "channel", l.channel, "err", err)
				}
				break
			}
			if l.match(n.Payload) {
				l.signal()
			}
		}
		l.connected.Store(false)
		_ = conn.Close(context.Background())
		for {
			if ctx.Err() != nil {
				return
			}
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			c, err := l.connect(cctx)
			cancel()
			if err == nil {
				conn, failures = c, 0
				break
			}
			failures++
			if failures == 1 || failures%20 == 0 {
				l.log.Warn("postgres listener: reconnect failed", "channel", l.channel, "attempts", failures, "err", err)
			}
			t := time.NewTimer(min(100*time.Millisecond<<min(failures, 6), time.Second))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		l.connected.Store(true)
		l.reconnects.Add(1)
		l.log.Info("postgres listener reconnected", "channel", l.channel)
		l.signal() // notifications sent while down are lost: read again
	}
}
