package presence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"encore.app/internal/pglisten"
)

var _ Store = (*PostgresStore)(nil)

// PostgresConfig configures NewPostgresStore. Zero values take the defaults.
type PostgresConfig struct {
	// Scope keeps the stores of different namespaces apart on one database (default
	// "realtime"): every row and notification carries it.
	Scope string
	// TTL: a liveness record lapses this long after its heartbeat (default 15s; the
	// trackers' TTL).
	TTL time.Duration
	// Retention of summaries (default 24h): the summaries of instances that died with
	// nobody left to purge them are deleted after it. Trackers rewrite theirs well
	// within it (Config.RefreshEvery).
	Retention time.Duration
	// CleanupEvery: how often the store deletes lapsed liveness records and summaries
	// past their retention, of every scope (default a minute).
	CleanupEvery time.Duration
	Logger       *slog.Logger
}

// pgPresenceNotify is the NOTIFY channel of every presence change (of every scope).
const pgPresenceNotify = "realtime_presence"

// pgMaxPayload bounds a notification's payload, under Postgres's 8000 bytes.
const pgMaxPayload = 7900

// Notification payloads: a kind byte, the scope's key, then the body.
const (
	noteSummary = 's' // the summary's JSON (a removal: the empty summary, with its V)
	noteChannel = 'k' // a channel key: the summary was too large to carry, read the channel
	noteAlive   = 'a' // a liveness record's JSON (a heartbeat)
)

// pgReloadChunk is how many followed channels one reload query reads.
const pgReloadChunk = 500

// PostgresStore keeps presence in two tables (realtime/pgmigrations,
// 6_presence.up.sql): realtime_presence holds per channel and instance one summary
// (its JSON, V and incarnation, updated_at, and expires_at: updated_at + the
// retention), and realtime_presence_alive per instance one liveness record with
// expires_at (now + TTL at each heartbeat). Reads skip lapsed liveness records; a
// ticker of every store deletes the expired rows of every scope (lapsed records,
// summaries past the retention), so neither table grows without bound, not even with
// the rows of namespaces whose servers are all gone.
//
// Writes announce themselves with NOTIFY on realtime_presence, in the transaction of
// the write (a Put is one pgx batch: its rows and notifications commit together, in
// one round trip). A summary's notification carries the summary itself when it fits
// the payload limit (nearly always: members are capped), else only the channel's key,
// and followers then read the channel's rows; a removal deletes the row and its
// notification carries the empty summary with the removal's V. A heartbeat's
// notification carries the liveness record: it reaches every FollowAlive callback of
// every store.
//
// One LISTEN connection per store (internal/pglisten) serves every follow, whatever
// their number: the listener hands payloads to a bounded queue, and one goroutine
// delivers them to the followers of the channel, so no callback ever blocks the
// listener. When the queue overflows, or after the listener reconnected (the
// notifications sent meanwhile are lost), the store delivers what is still queued
// (older than what it reads next), then reads every followed channel and the
// liveness records again. Because a removal deletes its row, such a reload cannot
// show it; so the store remembers, per followed channel, the instances whose summary
// it delivered last (bounded by the instances present), and delivers an empty summary
// (V one above the last delivered: any real later summary of that instance is newer)
// for each of them whose row is gone.
//
// Both tables are unlogged (presence needs no WAL): a crash of the database empties
// them, the listener reconnects, and the trackers, which watch Reconnects, write
// every summary again.
//
// Safe for concurrent use. Close stops the listener and the store's goroutines; the
// pool is the caller's.
type PostgresStore struct {
	// immutable
	cfg      PostgresConfig
	pool     *pgxpool.Pool
	scopeKey string // hex of the scope's hash: the notifications' prefix after the kind
	log      *slog.Logger
	lis      *pglisten.Listener
	notes    chan string   // payloads from the listener; never closed
	reload   chan struct{} // capacity 1: the queue overflowed, read everything again

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	closed   bool
	follows  map[string]*pgFollow // channel key -> follow
	aliveFns map[int]func(Alive)
	next     int
}

// pgFollow is one followed channel. Guarded by PostgresStore.mu.
type pgFollow struct {
	channel string
	fns     map[int]func(*Summary)
	// held: per instance the last summary delivered or loaded while non-empty (its
	// incarnation and V), for the removals a reload must deliver.
	held map[string]heldSum
}

type heldSum struct {
	inc string
	v   uint64
}

// NewPostgresStore checks that the tables answer (the schema must be applied), starts
// the listener and the store's goroutines. ctx bounds the setup.
func NewPostgresStore(ctx context.Context, pool *pgxpool.Pool, cfg PostgresConfig) (*PostgresStore, error) {
	if cfg.Scope == "" {
		cfg.Scope = "realtime"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 24 * time.Hour
	}
	if cfg.CleanupEvery <= 0 {
		cfg.CleanupEvery = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if _, err := pool.Exec(ctx, `SELECT 1 FROM realtime_presence, realtime_presence_alive LIMIT 1`); err != nil {
		return nil, fmt.Errorf("presence: postgres: %w (are realtime/pgmigrations applied?)", err)
	}
	h := sha256.Sum256([]byte(cfg.Scope))
	s := &PostgresStore{cfg: cfg, pool: pool, scopeKey: hex.EncodeToString(h[:8]),
		log: cfg.Logger.With("component", "presence-store"), notes: make(chan string, 8192),
		reload: make(chan struct{}, 1), follows: map[string]*pgFollow{}, aliveFns: map[int]func(Alive){}}
	lis, err := pglisten.StartFunc(ctx, pool, pgPresenceNotify, s.onNotify, s.log)
	if err != nil {
		return nil, fmt.Errorf("presence: listen: %w", err)
	}
	s.lis = lis
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(2)
	go s.dispatch()
	go s.cleanup()
	return s, nil
}

// onNotify runs on the listener's goroutine: it queues the scope's payloads and never
// blocks (a full queue drops, and asks for a reload).
func (s *PostgresStore) onNotify(p string) {
	if len(p) < 1+len(s.scopeKey) || p[1:1+len(s.scopeKey)] != s.scopeKey {
		return
	}
	select {
	case s.notes <- p:
	default:
		select {
		case s.reload <- struct{}{}:
		default:
		}
	}
}

func (s *PostgresStore) note(kind byte, body string) string {
	return string(kind) + s.scopeKey + body
}

func (s *PostgresStore) Put(ctx context.Context, sums []*Summary) error {
	if len(sums) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	payloads := make([]string, 0, len(sums))
	for _, sum := range sums {
		body, err := json.Marshal(sum)
		if err != nil {
			return err
		}
		if sum.Empty() {
			// Not a newer summary's row (a retried older write must not remove it).
			b.Queue(`DELETE FROM realtime_presence WHERE scope = $1 AND channel = $2 AND instance = $3
				AND (inc <> $4 OR v <= $5)`, s.cfg.Scope, sum.Channel, sum.Instance, sum.Inc, int64(sum.V))
		} else {
			b.Queue(`INSERT INTO realtime_presence (scope, channel, instance, inc, v, summary, updated_at, expires_at)
				VALUES ($1, $2, $3, $4, $5, $6, clock_timestamp(), clock_timestamp() + $7::bigint * interval '1 microsecond')
				ON CONFLICT (scope, channel, instance) DO UPDATE SET inc = EXCLUDED.inc, v = EXCLUDED.v,
					summary = EXCLUDED.summary, updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at
				WHERE realtime_presence.inc <> EXCLUDED.inc OR realtime_presence.v < EXCLUDED.v`,
				s.cfg.Scope, sum.Channel, sum.Instance, sum.Inc, int64(sum.V), body, s.cfg.Retention.Microseconds())
		}
		if p := s.note(noteSummary, string(body)); len(p) <= pgMaxPayload {
			payloads = append(payloads, p)
		} else {
			payloads = append(payloads, s.note(noteChannel, channelKey(sum.Channel)))
		}
	}
	b.Queue(`SELECT count(pg_notify($1, p)) FROM unnest($2::text[]) AS p`, pgPresenceNotify, payloads)
	// One round trip, one implicit transaction: the notifications go out at its commit.
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("presence: put: %w", err)
	}
	return nil
}

func (s *PostgresStore) Heartbeat(ctx context.Context, a Alive) error {
	body, _ := json.Marshal(a)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO realtime_presence_alive (scope, instance, inc, expires_at)
		VALUES ($1, $2, $3, clock_timestamp() + $4::bigint * interval '1 microsecond')
		ON CONFLICT (scope, instance) DO UPDATE SET inc = EXCLUDED.inc, expires_at = EXCLUDED.expires_at`,
		s.cfg.Scope, a.Instance, a.Inc, s.cfg.TTL.Microseconds())
	b.Queue(`SELECT pg_notify($1, $2)`, pgPresenceNotify, s.note(noteAlive, string(body)))
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("presence: heartbeat: %w", err)
	}
	return nil
}

// FollowAlive registers fn (the listener delivers heartbeats from then on), then
// reads the live records and delivers them.
func (s *PostgresStore) FollowAlive(fn func(Alive)) (func(), error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	id := s.next
	s.next++
	s.aliveFns[id] = fn
	s.mu.Unlock()
	stop := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.aliveFns, id)
	}
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	recs, err := s.loadAlive(ctx)
	if err != nil {
		stop()
		return nil, err
	}
	for _, a := range recs {
		fn(a)
	}
	return stop, nil
}

// loadAlive reads the records that have not lapsed.
func (s *PostgresStore) loadAlive(ctx context.Context) ([]Alive, error) {
	rows, err := s.pool.Query(ctx, `SELECT instance, inc FROM realtime_presence_alive
		WHERE scope = $1 AND expires_at > clock_timestamp()`, s.cfg.Scope)
	if err != nil {
		return nil, fmt.Errorf("presence: load liveness: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Alive, error) {
		var a Alive
		err := r.Scan(&a.Instance, &a.Inc)
		return a, err
	})
	if err != nil {
		return nil, fmt.Errorf("presence: load liveness: %w", err)
	}
	return out, nil
}

func (s *PostgresStore) aliveCallbacks() []func(Alive) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.aliveFns))
}

// Load reads channel's rows (removals are deleted rows: none comes back).
func (s *PostgresStore) Load(ctx context.Context, channel string) ([]*Summary, error) {
	byCh, err := s.loadChannels(ctx, []string{channel})
	if err != nil {
		return nil, fmt.Errorf("presence: load %s: %w", channel, err)
	}
	sums := byCh[channel]
	s.mu.Lock()
	if f := s.follows[channelKey(channel)]; f != nil && f.channel == channel {
		for _, sum := range sums {
			f.hold(sum)
		}
	}
	s.mu.Unlock()
	return sums, nil
}

// loadChannels reads the rows of channels, by channel.
func (s *PostgresStore) loadChannels(ctx context.Context, channels []string) (map[string][]*Summary, error) {
	rows, err := s.pool.Query(ctx, `SELECT summary FROM realtime_presence WHERE scope = $1 AND channel = ANY($2)`,
		s.cfg.Scope, channels)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string][]*Summary, len(channels))
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return nil, err
		}
		var sum Summary
		if json.Unmarshal(body, &sum) != nil || sum.Instance == "" {
			continue
		}
		out[sum.Channel] = append(out[sum.Channel], &sum)
	}
	return out, rows.Err()
}

// hold records sum as delivered to f's followers (Guarded by PostgresStore.mu).
func (f *pgFollow) hold(sum *Summary) {
	h, ok := f.held[sum.Instance]
	if ok && h.inc == sum.Inc && h.v > sum.V {
		return // older than what was delivered
	}
	if sum.Empty() {
		delete(f.held, sum.Instance)
		return
	}
	f.held[sum.Instance] = heldSum{inc: sum.Inc, v: sum.V}
}

func (s *PostgresStore) Follow(channel string, fn func(*Summary)) (func(), error) {
	key := channelKey(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	f := s.follows[key]
	if f == nil {
		f = &pgFollow{channel: channel, fns: map[int]func(*Summary){}, held: map[string]heldSum{}}
		s.follows[key] = f
	} else if f.channel != channel {
		return nil, fmt.Errorf("presence: follow %s: its key collides with %s", channel, f.channel)
	}
	id := s.next
	s.next++
	f.fns[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.follows[key] != f {
			return
		}
		delete(f.fns, id)
		if len(f.fns) == 0 {
			delete(s.follows, key)
		}
	}, nil
}

// deliver hands sum to the followers of its channel, if any.
func (s *PostgresStore) deliver(sum *Summary) {
	for _, fn := range s.hold(sum) {
		c := *sum
		fn(&c)
	}
}

// hold records sum on its channel's follow and returns the follow's callbacks.
func (s *PostgresStore) hold(sum *Summary) []func(*Summary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.follows[channelKey(sum.Channel)]
	if f == nil || f.channel != sum.Channel {
		return nil
	}
	f.hold(sum)
	return slices.Collect(maps.Values(f.fns))
}

// dispatch delivers the queued notifications in order, reads the channels whose
// summaries were too large to carry, and reads everything again after a reconnect
// or an overflow (retrying every second while that fails), until Close.
func (s *PostgresStore) dispatch() {
	defer s.wg.Done()
	dirty := map[string]bool{} // channel keys to read (followed ones only)
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		all := false
		select {
		case <-s.ctx.Done():
			return
		case <-s.lis.C:
			all = true
		case <-s.reload:
			all = true
		case <-retry.C:
			all = true
		case p := <-s.notes:
			s.handle(p, dirty)
		}
		if all {
			// The queued notifications are older than what the reload reads: deliver
			// them first, so that none of them undoes a removal the reload delivers.
			for n := len(s.notes); n > 0; n-- {
				s.handle(<-s.notes, dirty)
			}
			clear(dirty)
			if !s.reloadAll() {
				retry.Reset(retryDelay)
			}
			continue
		}
		if len(dirty) > 0 && (len(s.notes) == 0 || len(dirty) >= pgReloadChunk) {
			var chans []string
			s.mu.Lock()
			for key := range dirty {
				if f := s.follows[key]; f != nil {
					chans = append(chans, f.channel)
				}
			}
			s.mu.Unlock()
			clear(dirty)
			if !s.reloadChannels(chans) {
				retry.Reset(retryDelay)
			}
		}
	}
}

// handle applies one notification's payload.
func (s *PostgresStore) handle(p string, dirty map[string]bool) {
	kind, body := p[0], p[1+len(s.scopeKey):]
	switch kind {
	case noteAlive:
		var a Alive
		if json.Unmarshal([]byte(body), &a) == nil && a.Instance != "" {
			for _, fn := range s.aliveCallbacks() {
				fn(a)
			}
		}
	case noteSummary:
		var sum Summary
		if json.Unmarshal([]byte(body), &sum) == nil && sum.Instance != "" {
			s.deliver(&sum)
		}
	case noteChannel:
		s.mu.Lock()
		if s.follows[body] != nil {
			dirty[body] = true
		}
		s.mu.Unlock()
	}
}

// reloadAll delivers the live records and every followed channel's rows again.
func (s *PostgresStore) reloadAll() bool {
	s.mu.Lock()
	chans := make([]string, 0, len(s.follows))
	for _, f := range s.follows {
		chans = append(chans, f.channel)
	}
	s.mu.Unlock()
	s.log.Info("presence: reading the store again after missed notifications", "channels", len(chans))
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	recs, err := s.loadAlive(ctx)
	cancel()
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("presence: reload liveness", "err", err)
		}
		return false
	}
	for _, a := range recs {
		for _, fn := range s.aliveCallbacks() {
			fn(a)
		}
	}
	return s.reloadChannels(chans)
}

// reloadChannels reads channels (in chunks) and delivers their rows, and a removal
// for each instance whose summary was delivered but whose row is gone.
func (s *PostgresStore) reloadChannels(chans []string) bool {
	for len(chans) > 0 {
		chunk := chans[:min(len(chans), pgReloadChunk)]
		chans = chans[len(chunk):]
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		byCh, err := s.loadChannels(ctx, chunk)
		cancel()
		if err != nil {
			if s.ctx.Err() == nil {
				s.log.Warn("presence: reload", "channels", len(chunk), "err", err)
			}
			return false
		}
		for _, ch := range chunk {
			sums := byCh[ch]
			for _, sum := range sums {
				s.deliver(sum)
			}
			for _, gone := range s.gone(ch, sums) {
				s.deliver(gone)
			}
		}
	}
	return true
}

// gone returns the removals of channel's followed instances absent from sums.
func (s *PostgresStore) gone(channel string, sums []*Summary) []*Summary {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.follows[channelKey(channel)]
	if f == nil || f.channel != channel {
		return nil
	}
	present := make(map[string]bool, len(sums))
	for _, sum := range sums {
		present[sum.Instance] = true
	}
	var out []*Summary
	for inst, h := range f.held {
		if !present[inst] {
			out = append(out, &Summary{Channel: channel, Instance: inst, Inc: h.inc, V: h.v + 1})
		}
	}
	return out
}

// cleanup deletes lapsed liveness records and summaries past the retention, every
// CleanupEvery, until Close. Every store runs it; the deletes are idempotent.
func (s *PostgresStore) cleanup() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.CleanupEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
		err := s.Cleanup(ctx)
		cancel()
		if err != nil && s.ctx.Err() == nil {
			s.log.Warn("presence: cleanup", "err", err)
		}
	}
}

// Cleanup deletes the lapsed liveness records and the summaries past their retention
// (the store's ticker calls it every CleanupEvery). Of every scope: expiry times are
// absolute, set by each row's writer, so a namespace whose servers are all gone (an
// `encore test` process) leaves nothing behind for long.
func (s *PostgresStore) Cleanup(ctx context.Context) error {
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM realtime_presence_alive WHERE expires_at < clock_timestamp()`)
	b.Queue(`DELETE FROM realtime_presence WHERE expires_at < clock_timestamp()`)
	return s.pool.SendBatch(ctx, b).Close()
}

// Reconnects counts the listener's reconnects: the tracker writes its summaries again
// after one (the database may have restarted, emptying the unlogged tables).
func (s *PostgresStore) Reconnects() uint64 { return s.lis.Reconnects() }

func (s *PostgresStore) Purge(ctx context.Context, instance string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM realtime_presence WHERE scope = $1 AND instance = $2`,
		s.cfg.Scope, instance); err != nil {
		return fmt.Errorf("presence: purge: %w", err)
	}
	return nil
}

// Close stops the listener and the store's goroutines. Idempotent.
func (s *PostgresStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	clear(s.follows)
	clear(s.aliveFns)
	s.mu.Unlock()
	s.lis.Close()
	s.cancel()
	s.wg.Wait()
	return nil
}
