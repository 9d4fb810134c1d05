package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"encore.app/internal/pglisten"
	"encore.app/realtime/pgmigrations"
)

var _ Bus = (*Postgres)(nil)

// PostgresConfig configures NewPostgres and OpenPostgres. Zero values take the defaults
// (the same as JetStream's where both have the setting).
type PostgresConfig struct {
	// Stream names the stream: one row of realtime_streams, default "realtime". Buses
	// with the same Stream on the same database share one stream.
	Stream    string
	MaxAge    time.Duration // retention by age, default 24h; < 0 = unlimited
	MaxBytes  int64         // retention by size, default 1 GiB; < 0 = unlimited
	DupWindow time.Duration // duplicate window for publisher IDs, default 2m (at most MaxAge)

	// PollInterval is the safety net of live delivery: a subscription reads the table
	// this often even without a notification (default 1s). Notifications are the
	// normal path; a missed one (a dropped listener connection, a pooler that does not
	// pass LISTEN through) costs at most this much latency, never an event.
	PollInterval time.Duration
	// PruneInterval is how often retention runs (default 1s, at most MaxAge/4).
	PruneInterval time.Duration
	// MaxBatch bounds the events appended in one transaction (default 2000; and 8 MiB
	// of bodies): the writer coalesces concurrent Publish calls up to it.
	MaxBatch int
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Postgres defaults.
const (
	DefaultPostgresStream = "realtime"
	pgDefaultPoll         = time.Second
	pgDefaultPrune        = time.Second
	pgDefaultMaxBatch     = 2000
	pgWriteTimeout        = 10 * time.Second // one append transaction (as ackTimeout)
	pgReadPage            = 1000             // events per live read
	pgPruneBatch          = 5000             // events per retention delete
	pgPruneBatches        = 20               // deletes per retention run
	pgMaxChannel          = 1024             // bytes: the (stream, channel, seq) index holds it
	pgMaxBatchBytes       = 8 << 20          // bodies per append transaction (one call is never split)
	pgNotifyChannel       = "realtime_events"
	pgEventOverhead       = 48 // bytes counted per event beyond body, channel and id
)

func (c *PostgresConfig) normalize() error {
	if c.Stream == "" {
		c.Stream = DefaultPostgresStream
	}
	if len(c.Stream) > 200 || strings.ContainsAny(c.Stream, " \t\r\n") {
		return fmt.Errorf("bus: config: invalid stream name %q", c.Stream)
	}
	c.MaxAge, c.MaxBytes, c.DupWindow = retention(c.MaxAge, c.MaxBytes, c.DupWindow, 0)
	if c.PollInterval <= 0 {
		c.PollInterval = pgDefaultPoll
	}
	if c.PruneInterval <= 0 {
		c.PruneInterval = pgDefaultPrune
	}
	if c.MaxAge > 0 {
		c.PruneInterval = max(min(c.PruneInterval, c.MaxAge/4), 10*time.Millisecond)
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = pgDefaultMaxBatch
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Logger = c.Logger.With("component", "bus")
	return nil
}

// Postgres is the Bus on a PostgreSQL database (the one Encore provisions, or any
// other): events are rows of realtime_events, the stream's counters one row of
// realtime_streams, live delivery is woken by LISTEN/NOTIFY.
//
// Sequence numbers are assigned in commit order: every append transaction first locks
// the stream's row (the single-writer lock), takes the next numbers from its counter,
// inserts, notifies and commits; the next writer gets the lock only after that commit
// is visible. A reader of seq > cursor therefore never sees a number that a slower,
// still open transaction fills in later (the gap a sequence or an identity column
// would show: numbers are allocated in one order and committed in another).
// Concurrent Publish calls of one instance are coalesced into one transaction by a
// writer goroutine; instances serialize on the lock.
//
// Deduplication: an event whose ID was appended within DupWindow (looked up under
// the lock, so two writers cannot both miss it) is acknowledged as a duplicate with
// the original sequence. Retention (age and bytes) runs in the background on one
// instance at a time (an advisory lock), in bounded deletes. The epoch is the stream
// row's: deleting the row recreates the stream with a new epoch at the next Info or
// Publish.
//
// All methods are safe for concurrent use. The Postgres owns its goroutines (writer,
// listener, pruner, one per subscription) and, from OpenPostgres only, the pool;
// Close stops and waits for them.
type Postgres struct {
	// immutable after construction
	cfg     PostgresConfig
	log     *slog.Logger
	pool    *pgxpool.Pool
	ownPool bool
	lockKey int64 // advisory lock key of the pruner

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup // writer, listener, pruner, subscriptions

	reqs chan *pgPublish // to the writer; never closed

	wake      waker              // listener -> subscriptions
	lis       *pglisten.Listener // LISTENs on its own connection; closed by Close
	epoch     atomic.Pointer[string]
	malformed atomic.Uint64
	appends   atomic.Uint64 // append transactions committed
	pending   atomic.Int64  // Publish calls handed to the writer and not answered
}

// OpenPostgres connects to the database at url (a postgres:// URL or a DSN), applies
// the migrations (realtime/pgmigrations) and returns the bus, which owns the pool:
// the standalone server's path. ctx bounds the setup only.
func OpenPostgres(ctx context.Context, url string, cfg PostgresConfig) (*Postgres, error) {
	pool, err := NewPostgresPool(ctx, url)
	if err != nil {
		return nil, err
	}
	if _, err := pgmigrations.Apply(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("bus: %w", classify(err))
	}
	p, err := NewPostgres(ctx, pool, cfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	p.ownPool = true
	return p, nil
}

// NewPostgresPool opens a pool on url and checks that the database answers (errors
// wrap ErrUnavailable when it does not).
func NewPostgresPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("bus: postgres url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("bus: postgres: %w: %w", ErrUnavailable, err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("bus: postgres %s: %w: %w", pc.ConnConfig.Host, ErrUnavailable, err)
	}
	return pool, nil
}

// NewPostgres returns the bus on pool, whose database must have the migrations
// applied (under Encore: sqldb.NewDatabase with realtime/pgmigrations, and
// sqldb.Driver[*pgxpool.Pool] for the pool; standalone: OpenPostgres or
// pgmigrations.Apply). The caller keeps the pool and closes it after the bus. It
// creates the stream if missing and starts listening. ctx bounds the setup only.
func NewPostgres(ctx context.Context, pool *pgxpool.Pool, cfg PostgresConfig) (*Postgres, error) {
	if pool == nil {
		return nil, errors.New("bus: postgres: nil pool")
	}
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	h := fnv.New64a()
	_, _ = h.Write([]byte("realtime-prune:" + cfg.Stream))
	p := &Postgres{cfg: cfg, log: cfg.Logger, pool: pool, lockKey: int64(h.Sum64()), reqs: make(chan *pgPublish, 1024)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wake.init()
	if _, err := p.ensureStream(ctx); err != nil {
		p.cancel()
		return nil, err
	}
	// The notifications' payload is "<last seq> <stream>" (appendTx).
	lis, err := pglisten.StartMatch(ctx, pool, pgNotifyChannel, func(payload string) bool {
		_, stream, ok := strings.Cut(payload, " ")
		return ok && stream == cfg.Stream
	}, p.log)
	if err != nil {
		p.cancel()
		return nil, p.wrap("listen", err)
	}
	p.lis = lis
	p.wg.Add(3)
	go p.writer()
	go p.listen()
	go p.pruner()
	p.log.Info("bus: postgres stream ready", "stream", cfg.Stream, "epoch", p.Epoch())
	return p, nil
}

// Pool is the bus's pool, for the other users of the same database (flags, fleet
// health, connection cap). Do not close it while the bus is open.
func (p *Postgres) Pool() *pgxpool.Pool { return p.pool }

// Connected reports whether the bus's listening connection is up: false while the
// database is unreachable (for BreakerConfig.Connected).
func (p *Postgres) Connected() bool { return p.lis.Connected() && !p.isClosed() }

// Epoch is the epoch cached from the last stream read (no round trip).
func (p *Postgres) Epoch() string {
	if e := p.epoch.Load(); e != nil {
		return *e
	}
	return ""
}

// Malformed counts stored events that could not be decoded and were skipped.
func (p *Postgres) Malformed() uint64 { return p.malformed.Load() }

// Pending is the number of Publish calls waiting for the writer's answer.
func (p *Postgres) Pending() int { return int(p.pending.Load()) }

// Appends counts the append transactions committed (each holds one or more
// coalesced Publish calls).
func (p *Postgres) Appends() uint64 { return p.appends.Load() }

func (p *Postgres) setEpoch(e string) {
	if old := p.epoch.Swap(&e); old != nil && *old != e {
		p.log.Warn("bus: stream was recreated, epoch changed", "stream", p.cfg.Stream, "old", *old, "new", e)
	}
}

// ensureStream creates the stream's row if it is missing (removing events left by a
// deleted incarnation) and caches the epoch.
func (p *Postgres) ensureStream(ctx context.Context) (string, error) {
	var epoch string
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `INSERT INTO realtime_streams (name, epoch) VALUES ($1, $2)
			ON CONFLICT (name) DO NOTHING RETURNING epoch`, p.cfg.Stream, epochOf(time.Now())).Scan(&epoch)
		if errors.Is(err, pgx.ErrNoRows) {
			return tx.QueryRow(ctx, `SELECT epoch FROM realtime_streams WHERE name = $1`, p.cfg.Stream).Scan(&epoch)
		}
		if err != nil {
			return err
		}
		p.log.Info("bus: stream created", "stream", p.cfg.Stream, "epoch", epoch)
		_, err = tx.Exec(ctx, `DELETE FROM realtime_events WHERE stream = $1`, p.cfg.Stream)
		return err
	})
	if err != nil {
		return "", p.wrap("create stream "+p.cfg.Stream, err)
	}
	p.setEpoch(epoch)
	return epoch, nil
}

// Info implements Bus. A stream whose row was deleted is recreated (new epoch).
func (p *Postgres) Info(ctx context.Context) (Info, error) {
	if p.isClosed() {
		return Info{}, fmt.Errorf("bus: info: %w", ErrClosed)
	}
	for attempt := 0; ; attempt++ {
		var info Info
		var first *int64
		var last int64
		err := p.pool.QueryRow(ctx, `SELECT s.epoch, s.last_seq,
				(SELECT min(e.seq) FROM realtime_events e WHERE e.stream = s.name)
			FROM realtime_streams s WHERE s.name = $1`, p.cfg.Stream).Scan(&info.Epoch, &last, &first)
		if errors.Is(err, pgx.ErrNoRows) && attempt == 0 {
			p.log.Warn("bus: stream missing, recreating", "stream", p.cfg.Stream)
			if _, err := p.ensureStream(ctx); err != nil {
				return Info{}, err
			}
			continue
		}
		if err != nil {
			return Info{}, p.wrap("info", err)
		}
		info.LastSeq = uint64(last)
		switch {
		case first != nil:
			info.FirstSeq = uint64(*first)
		case last > 0:
			info.FirstSeq = info.LastSeq + 1
		}
		p.setEpoch(info.Epoch)
		return info, nil
	}
}

// Close implements Bus: it stops the subscriptions, the writer (pending Publish calls
// fail with ErrClosed), the listener and the pruner, waits for them, and closes the
// pool if OpenPostgres opened it. Idempotent.
func (p *Postgres) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	p.lis.Close()
	if p.ownPool {
		p.pool.Close()
	}
	p.log.Info("bus: closed")
	return nil
}

func (p *Postgres) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// goRun starts fn on a goroutine owned by p, unless p is closed.
func (p *Postgres) goRun(fn func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		fn()
	}()
	return true
}

// wrap adds context to err and classifies it like JetStream.wrap: ErrClosed after
// Close, ErrUnavailable for connectivity, timeouts and a server shutting down.
func (p *Postgres) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if p.isClosed() {
		return fmt.Errorf("bus: %s: %w: %w", op, ErrClosed, err)
	}
	return fmt.Errorf("bus: %s: %w", op, classify(err))
}

// classify wraps err with ErrUnavailable when it means the database cannot be
// reached or cannot answer now, and explains a missing schema.
func classify(err error) error {
	if errors.Is(err, ErrUnavailable) || errors.Is(err, ErrClosed) {
		return err
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "42P01": // undefined_table
			return fmt.Errorf("%w (apply realtime/pgmigrations: bus.OpenPostgres or pgmigrations.Apply standalone, sqldb.NewDatabase under Encore)", err)
		case pgUnavailableCode(pe.Code):
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return err
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if pgUnavailableErr(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// pgUnavailableCode: connection exceptions (08), insufficient resources (53),
// operator intervention (57: shutdown, cannot connect now, statement cancelled), system
// errors (58), and serialization failures and deadlocks (40001, 40P01: retry).
func pgUnavailableCode(code string) bool {
	switch {
	case strings.HasPrefix(code, "08"), strings.HasPrefix(code, "53"), strings.HasPrefix(code, "57"),
		strings.HasPrefix(code, "58"), code == "40001", code == "40P01":
		return true
	}
	return false
}

// pgUnavailableErr: anything that is not an answer of the server (network, timeout,
// a closed connection, a connect failure).
func pgUnavailableErr(err error) bool {
	var ne net.Error
	var ce *pgconn.ConnectError
	switch {
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err), errors.As(err, &ce), errors.As(err, &ne),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "closed pool") ||
		strings.Contains(msg, "failed to connect") || strings.Contains(msg, "unexpected EOF")
}

// waker wakes every waiter at once: wait returns a channel closed by the next wake.
type waker struct {
	mu sync.Mutex
	ch chan struct{} // closed and replaced by wake
}

func (w *waker) init() { w.ch = make(chan struct{}) }

func (w *waker) wait() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ch
}

func (w *waker) wake() {
	w.mu.Lock()
	close(w.ch)
	w.ch = make(chan struct{})
	w.mu.Unlock()
}
