package presence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"encore.app/internal/jsdirect"
)

var _ Store = (*NATSStore)(nil)

// NATSConfig configures NewNATSStore. Zero values take the defaults.
type NATSConfig struct {
	// Bucket holds the summaries (default "realtime-presence"), AliveBucket the
	// liveness records (default "realtime-presence-alive"). Both are memory-backed
	// key-value buckets.
	Bucket, AliveBucket string
	// TTL: a liveness record lapses this long after its heartbeat (default 15s; the
	// trackers' TTL).
	TTL time.Duration
	// Retention of summaries in the store (default 24h): summaries of instances that
	// died with nobody left to purge them vanish after it. Trackers rewrite theirs
	// well within it (Config.RefreshEvery).
	Retention time.Duration
	// Replicas of both buckets (default 1; 3 on a NATS cluster of 3 or more nodes).
	Replicas int
	Logger   *slog.Logger
}

// NATSStore keeps presence in two memory-backed NATS key-value buckets: per instance
// and channel one summary under "<instance hash>.<channel hash>" (removals are deletes
// that carry the empty summary as their body), and per instance one liveness record
// that lapses after TTL. Followers subscribe to the keys of a channel, and to the
// liveness records, as plain NATS subjects: they get the writes themselves, with no
// consumer. Reads are one direct get of the last message of every key of a channel
// (multi_last). One goroutine delivers every follow; after a reconnect or dropped
// messages it reads every followed channel and the liveness records again, and a
// write that finds the buckets gone (a restarted NATS) creates them again.
//
// Safe for concurrent use. Close stops the store's goroutines; the connection is the
// caller's.
type NATSStore struct {
	// immutable
	cfg         NATSConfig
	nc          *nats.Conn
	js          jetstream.JetStream
	stream      string // the summaries bucket's stream, KV_<bucket>
	prefix      string // $KV.<bucket>.
	aliveStream string // KV_<alive bucket>
	alivePrefix string // $KV.<alive bucket>.
	log         *slog.Logger
	deliver     chan *nats.Msg // follow messages; never closed

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	follows    map[string]*follow     // channel hash -> follow
	fresh      map[string]freshFollow // channel hash -> a follow to read again (see Follow)
	aliveFns   map[int]func(Alive)
	aliveSub   *nats.Subscription // while aliveFns is not empty
	next       int
	lastEnsure time.Time
}

// freshFollow is a new follow's channel and when it began.
type freshFollow struct {
	channel string
	at      time.Time
}

// freshDelay: a new follow's channel is read again this long (at the next tick after
// it) after it began, when JetStream has stored any write that raced it.
const freshDelay = 500 * time.Millisecond

type follow struct {
	channel string
	sub     *nats.Subscription
	fns     map[int]func(*Summary)
}

// NewNATSStore creates (or updates) the buckets on nc's JetStream and starts the
// store's goroutines.
func NewNATSStore(ctx context.Context, nc *nats.Conn, cfg NATSConfig) (*NATSStore, error) {
	if cfg.Bucket == "" {
		cfg.Bucket = "realtime-presence"
	}
	if cfg.AliveBucket == "" {
		cfg.AliveBucket = "realtime-presence-alive"
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Retention <= 0 {
		cfg.Retention = 24 * time.Hour
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("presence: jetstream: %w", err)
	}
	s := &NATSStore{cfg: cfg, nc: nc, js: js, stream: "KV_" + cfg.Bucket, prefix: "$KV." + cfg.Bucket + ".",
		aliveStream: "KV_" + cfg.AliveBucket, alivePrefix: "$KV." + cfg.AliveBucket + ".",
		log: cfg.Logger.With("component", "presence-store"), deliver: make(chan *nats.Msg, 8192),
		follows: map[string]*follow{}, fresh: map[string]freshFollow{}, aliveFns: map[int]func(Alive){}}
	if err := s.ensure(ctx); err != nil {
		return nil, err
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(2)
	go s.dispatch()
	go s.watchConnection()
	return s, nil
}

// instanceKey and channelKey are the key tokens of names (which may hold characters
// keys may not).
func instanceKey(inst string) string {
	h := sha256.Sum256([]byte(inst))
	return hex.EncodeToString(h[:8])
}

func channelKey(ch string) string {
	h := sha256.Sum256([]byte(ch))
	return hex.EncodeToString(h[:12])
}

// ensure creates (or updates) both buckets: at start, and again when a write finds
// them gone (a restarted NATS loses memory-backed buckets).
func (s *NATSStore) ensure(ctx context.Context) error {
	if _, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: s.cfg.Bucket, Description: "realtime: presence summaries (instance x channel)",
		History: 1, TTL: s.cfg.Retention, Storage: jetstream.MemoryStorage, Replicas: s.cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("presence: bucket %s: %w", s.cfg.Bucket, err)
	}
	if _, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: s.cfg.AliveBucket, Description: "realtime: presence liveness (one record per instance)",
		History: 1, TTL: s.cfg.TTL, Storage: jetstream.MemoryStorage, Replicas: s.cfg.Replicas,
	}); err != nil {
		return fmt.Errorf("presence: bucket %s: %w", s.cfg.AliveBucket, err)
	}
	return nil
}

// recreate runs ensure after a write failed with err, at most once a second, and
// reports whether the write should be tried again.
func (s *NATSStore) recreate(ctx context.Context, err error) bool {
	if !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, jetstream.ErrNoStreamResponse) &&
		!errors.Is(err, jetstream.ErrStreamNotFound) {
		return false
	}
	s.mu.Lock()
	if time.Since(s.lastEnsure) < time.Second {
		s.mu.Unlock()
		return false
	}
	s.lastEnsure = time.Now()
	s.mu.Unlock()
	if e := s.ensure(ctx); e != nil {
		s.log.Warn("presence: recreating the buckets", "err", e)
		return false
	}
	s.log.Info("presence: buckets recreated")
	return true
}

func (s *NATSStore) Put(ctx context.Context, sums []*Summary) error {
	err := s.put(ctx, sums)
	if err != nil && s.recreate(ctx, err) {
		err = s.put(ctx, sums)
	}
	return err
}

func (s *NATSStore) put(ctx context.Context, sums []*Summary) error {
	futures := make([]jetstream.PubAckFuture, 0, len(sums))
	for _, sum := range sums {
		body, err := json.Marshal(sum)
		if err != nil {
			return err
		}
		m := nats.NewMsg(s.prefix + instanceKey(sum.Instance) + "." + channelKey(sum.Channel))
		m.Data = body
		if sum.Empty() {
			m.Header.Set("KV-Operation", "DEL")
		}
		f, err := s.js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("presence: put: %w", err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("presence: put: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("presence: put: %w", ctx.Err())
		}
	}
	return nil
}

func (s *NATSStore) Heartbeat(ctx context.Context, a Alive) error {
	body, _ := json.Marshal(a)
	_, err := s.js.Publish(ctx, s.alivePrefix+instanceKey(a.Instance), body)
	if err != nil && s.recreate(ctx, err) {
		_, err = s.js.Publish(ctx, s.alivePrefix+instanceKey(a.Instance), body)
	}
	if err != nil {
		return fmt.Errorf("presence: heartbeat: %w", err)
	}
	return nil
}

// FollowAlive subscribes to the liveness records as they are written, then reads the
// stored ones (the last of every key) and delivers them.
func (s *NATSStore) FollowAlive(fn func(Alive)) (func(), error) {
	s.mu.Lock()
	if s.aliveSub == nil {
		sub, err := s.nc.ChanSubscribe(s.alivePrefix+"*", s.deliver)
		if err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("presence: follow liveness: %w", err)
		}
		s.aliveSub = sub
	}
	id := s.next
	s.next++
	s.aliveFns[id] = fn
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	recs, err := s.loadAlive(ctx)
	if err != nil {
		s.stopAlive(id)
		return nil, err
	}
	for _, a := range recs {
		fn(a)
	}
	return func() { s.stopAlive(id) }, nil
}

func (s *NATSStore) stopAlive(id int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.aliveFns, id)
	if len(s.aliveFns) == 0 && s.aliveSub != nil {
		_ = s.aliveSub.Unsubscribe()
		s.aliveSub = nil
	}
}

// loadAlive reads the live records (lapsed ones are gone from the bucket).
func (s *NATSStore) loadAlive(ctx context.Context) ([]Alive, error) {
	var out []Alive
	err := jsdirect.Get(ctx, s.nc, s.aliveStream, jsdirect.Request{MultiLast: []string{s.alivePrefix + "*"}}, func(m *jsdirect.Msg) error {
		if op := m.Header.Get("KV-Operation"); op != "" {
			return nil
		}
		var a Alive
		if json.Unmarshal(m.Data, &a) == nil && a.Instance != "" {
			out = append(out, a)
		}
		return nil
	})
	if errors.Is(err, jsdirect.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("presence: load liveness: %w", err)
	}
	return out, nil
}

func (s *NATSStore) aliveCallbacks() []func(Alive) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.aliveFns))
}

func (s *NATSStore) Load(ctx context.Context, channel string) ([]*Summary, error) {
	var out []*Summary
	err := jsdirect.Get(ctx, s.nc, s.stream, jsdirect.Request{MultiLast: []string{s.prefix + "*." + channelKey(channel)}}, func(m *jsdirect.Msg) error {
		if sum, ok := decodeSummary(m.Data, m.Header); ok && sum.Channel == channel {
			out = append(out, sum)
		}
		return nil
	})
	if errors.Is(err, jsdirect.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("presence: load %s: %w", channel, err)
	}
	return out, nil
}

// decodeSummary reads a stored or published summary; a delete or purge is an empty
// summary (its body, when there is one, says whose).
func decodeSummary(data []byte, h nats.Header) (*Summary, bool) {
	var sum Summary
	if len(data) == 0 || json.Unmarshal(data, &sum) != nil || sum.Instance == "" {
		return nil, false
	}
	if op := h.Get("KV-Operation"); op == "DEL" || op == "PURGE" {
		sum.Members, sum.Users, sum.Conns, sum.Anonymous = nil, 0, 0, 0
	}
	return &sum, true
}

func (s *NATSStore) Follow(channel string, fn func(*Summary)) (func(), error) {
	key := channelKey(channel)
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.follows[key]
	if f == nil {
		sub, err := s.nc.ChanSubscribe(s.prefix+"*."+key, s.deliver)
		if err != nil {
			return nil, fmt.Errorf("presence: follow %s: %w", channel, err)
		}
		// The shared channel is the buffer; the subscription must not drop first.
		_ = sub.SetPendingLimits(-1, -1)
		f = &follow{channel: channel, sub: sub, fns: map[int]func(*Summary){}}
		s.follows[key] = f
		// A write racing the subscription can miss it (routed before the server has
		// the subscription) and the caller's first Load too (stored by JetStream
		// after that read): the channel is read again a little later.
		s.fresh[key] = freshFollow{channel: channel, at: time.Now()}
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
			_ = f.sub.Unsubscribe()
			delete(s.follows, key)
		}
	}, nil
}

// dispatch delivers followed channels' messages, in order, until Close.
func (s *NATSStore) dispatch() {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case m := <-s.deliver:
			if strings.HasPrefix(m.Subject, s.alivePrefix) {
				var a Alive
				if json.Unmarshal(m.Data, &a) == nil && a.Instance != "" {
					for _, fn := range s.aliveCallbacks() {
						fn(a)
					}
				}
				continue
			}
			sum, ok := decodeSummary(m.Data, m.Header)
			if !ok {
				continue
			}
			tokens := strings.Split(strings.TrimPrefix(m.Subject, s.prefix), ".")
			if len(tokens) != 2 {
				continue
			}
			for _, fn := range s.fns(tokens[1], sum.Channel) {
				c := *sum
				fn(&c)
			}
		}
	}
}

// fns returns the callbacks of a followed channel.
func (s *NATSStore) fns(key, channel string) []func(*Summary) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.follows[key]
	if f == nil || f.channel != channel {
		return nil
	}
	return slices.Collect(maps.Values(f.fns))
}

// watchConnection reloads every followed channel after the connection was lost or
// the delivery buffer overflowed (messages were missed).
func (s *NATSStore) watchConnection() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	reconnects := s.nc.Stats().Reconnects
	lost := false
	var dropped int // messages the subscriptions dropped so far
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		missed := lost
		if r := s.nc.Stats().Reconnects; r != reconnects {
			reconnects, missed = r, true
		}
		s.mu.Lock()
		var fresh []string
		for key, ff := range s.fresh {
			switch {
			case s.follows[key] == nil:
				delete(s.fresh, key)
			case time.Since(ff.at) >= freshDelay:
				fresh = append(fresh, ff.channel)
				delete(s.fresh, key)
			}
		}
		drops := 0
		if s.aliveSub != nil {
			n, _ := s.aliveSub.Dropped()
			drops += n
		}
		var chans []string
		for _, f := range s.follows {
			n, _ := f.sub.Dropped()
			drops += n
			chans = append(chans, f.channel)
		}
		s.mu.Unlock()
		if drops > dropped {
			missed = true
		}
		dropped = drops
		if !s.nc.IsConnected() {
			lost = true // reload once connected again
			continue
		}
		if !missed {
			s.reload(fresh)
			continue
		}
		lost = false
		s.log.Info("presence: reloading after missed updates", "channels", len(chans))
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		recs, err := s.loadAlive(ctx)
		cancel()
		if err != nil {
			s.log.Warn("presence: reload liveness", "err", err)
		}
		for _, a := range recs {
			for _, fn := range s.aliveCallbacks() {
				fn(a)
			}
		}
		s.reload(chans)
	}
}

// reload reads chans from the bucket and delivers their summaries to the followers
// (who drop what they already hold by V).
func (s *NATSStore) reload(chans []string) {
	for _, ch := range chans {
		ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
		sums, err := s.Load(ctx, ch)
		cancel()
		if err != nil {
			s.log.Warn("presence: reload", "channel", ch, "err", err)
			continue
		}
		for _, sum := range sums {
			for _, fn := range s.fns(channelKey(ch), ch) {
				c := *sum
				fn(&c)
			}
		}
	}
}

// Reconnects counts the connection's reconnects: the tracker writes its summaries
// again after one.
func (s *NATSStore) Reconnects() uint64 { return s.nc.Stats().Reconnects }

func (s *NATSStore) Purge(ctx context.Context, instance string) error {
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return fmt.Errorf("presence: purge: %w", err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(s.prefix+instanceKey(instance)+".*")); err != nil {
		return fmt.Errorf("presence: purge: %w", err)
	}
	return nil
}

// Close unsubscribes and stops the store's goroutines.
func (s *NATSStore) Close() error {
	s.mu.Lock()
	for key, f := range s.follows {
		_ = f.sub.Unsubscribe()
		delete(s.follows, key)
	}
	if s.aliveSub != nil {
		_ = s.aliveSub.Unsubscribe()
		s.aliveSub = nil
	}
	clear(s.aliveFns)
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}
