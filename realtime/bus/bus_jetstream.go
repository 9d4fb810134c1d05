package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"encore.app/realtime/protocol"
)

var _ Bus = (*JetStream)(nil)

// Config configures NewJetStream. The zero value of every field but DataDir (or URL)
// selects a default.
type Config struct {
	// URL is a comma-separated list of external NATS URLs. Empty starts an embedded
	// nats-server in this process.
	URL string
	// DataDir is the embedded server's JetStream file storage directory. Required when
	// URL is empty; ignored otherwise.
	DataDir string
	// ListenAddr, when set (e.g. "127.0.0.1:0"; port 0 picks a free port), makes the
	// embedded server also accept TCP clients, so other processes can share it via
	// ClientURL. Empty: the embedded server does not listen at all. Ignored with URL.
	ListenAddr string

	Stream    string        // stream name, default "REALTIME"
	Subject   string        // subject prefix, default "rt.ev"; events go on "<prefix>.<channel>"
	MaxAge    time.Duration // retention by age, default 24h; < 0 = unlimited
	MaxBytes  int64         // retention by size, default 1 GiB; < 0 = unlimited
	Replicas  int           // stream replicas, default 1 (forced to 1 for the embedded server)
	DupWindow time.Duration // duplicate window for publisher IDs, default 2m (at most MaxAge)

	// NATSOptions are extra client options (credentials, TLS, ...) for an external NATS.
	// They are applied after the bus's own options and may override them.
	NATSOptions []nats.Option
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultStream    = "REALTIME"
	DefaultSubject   = "rt.ev"
	DefaultMaxAge    = 24 * time.Hour
	DefaultMaxBytes  = int64(1) << 30
	DefaultDupWindow = 2 * time.Minute
)

const (
	startTimeout      = 10 * time.Second // embedded server ready / external connect
	ackTimeout        = 10 * time.Second // max wait for one publish ack without a ctx deadline
	replayBatch       = 256              // messages per replay fetch
	cleanupTimeout    = 2 * time.Second  // best-effort consumer deletion
	closeGrace        = 3 * time.Second  // Close waits this long before cutting the connection
	liveInactive      = 2 * time.Minute  // server drops an abandoned live consumer after this
	replayInactive    = 30 * time.Second // ... and an abandoned replay consumer after this
	maxResubBackoff   = 5 * time.Second
	liveResetAttempts = 3
	// A live pull notices a lost server (node died, reconnect to another node) by
	// missed heartbeats: 2s here instead of nats.go's 15s default, so the clients of an
	// instance whose NATS node died pause ~3s instead of ~11s (test/cluster).
	liveExpiry    = 10 * time.Second
	liveHeartbeat = 2 * time.Second
)

// JetStream is the Bus backed by a NATS JetStream stream, on an embedded nats-server
// (Config.URL empty) or an external NATS (cluster).
//
// All methods are safe for concurrent use. The JetStream owns its NATS connection, the
// embedded server (if any) and the delivery goroutines started by Subscribe; Close
// stops and waits for all of them. Callers own nothing to close but the JetStream.
type JetStream struct {
	cfg    Config
	log    *slog.Logger
	srv    *server.Server // nil with an external NATS
	nc     *nats.Conn
	js     jetstream.JetStream
	prefix string // cfg.Subject + "."

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	mu     sync.Mutex // guards closed and wg.Add
	closed bool
	wg     sync.WaitGroup // delivery goroutines

	epoch     atomic.Pointer[string]
	malformed atomic.Uint64
}

// NewJetStream connects to (or starts) NATS, creates or updates the stream and returns
// the bus. ctx bounds the setup only. On error nothing is left running.
func NewJetStream(ctx context.Context, cfg Config) (*JetStream, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	j := &JetStream{cfg: cfg, log: cfg.Logger, prefix: cfg.Subject + "."}
	j.ctx, j.cancel = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			j.cancel()
			if j.nc != nil {
				j.nc.Close()
			}
			if j.srv != nil {
				j.srv.Shutdown()
				j.srv.WaitForShutdown()
			}
		}
	}()

	if cfg.URL == "" {
		if err := j.startEmbedded(ctx); err != nil {
			return nil, err
		}
	} else if err := j.connectExternal(ctx); err != nil {
		return nil, err
	}
	js, err := jetstream.New(j.nc, jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	j.js = js
	if err := j.ensureStream(ctx); err != nil {
		return nil, err
	}
	ok = true
	return j, nil
}

func (c *Config) normalize() error {
	if c.URL == "" && c.DataDir == "" {
		return errors.New("bus: config: DataDir is required for the embedded server")
	}
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if strings.ContainsAny(c.Stream, " \t\r\n.*>/\\") {
		return fmt.Errorf("bus: config: invalid stream name %q", c.Stream)
	}
	if c.Subject == "" {
		c.Subject = DefaultSubject
	}
	for _, tok := range strings.Split(c.Subject, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return fmt.Errorf("bus: config: invalid subject prefix %q", c.Subject)
		}
	}
	switch {
	case c.MaxAge == 0:
		c.MaxAge = DefaultMaxAge
	case c.MaxAge < 0:
		c.MaxAge = 0
	}
	switch {
	case c.MaxBytes == 0:
		c.MaxBytes = DefaultMaxBytes
	case c.MaxBytes < 0:
		c.MaxBytes = -1
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.DupWindow <= 0 {
		c.DupWindow = DefaultDupWindow
	}
	if c.MaxAge > 0 && c.DupWindow > c.MaxAge {
		c.DupWindow = c.MaxAge // JetStream refuses a duplicate window longer than MaxAge
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Logger = c.Logger.With("component", "bus")
	return nil
}

func (j *JetStream) startEmbedded(ctx context.Context) error {
	opts := &server.Options{
		ServerName: "realtime-bus",
		JetStream:  true,
		StoreDir:   j.cfg.DataDir,
		NoSigs:     true,
		DontListen: j.cfg.ListenAddr == "",
	}
	if j.cfg.ListenAddr != "" {
		host, port, err := net.SplitHostPort(j.cfg.ListenAddr)
		if err != nil {
			return fmt.Errorf("bus: config: ListenAddr: %w", err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("bus: config: ListenAddr: bad port %q", port)
		}
		if p == 0 {
			p = server.RANDOM_PORT
		}
		opts.Host, opts.Port = host, p
	}
	if j.cfg.Replicas != 1 {
		j.log.Warn("bus: embedded server is not clustered, using 1 replica", "replicas", j.cfg.Replicas)
		j.cfg.Replicas = 1
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("bus: embedded server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{j.log}, false, false, false)
	j.srv = srv
	srv.Start()
	if !srv.ReadyForConnections(boundedWait(ctx, startTimeout)) || !srv.JetStreamEnabled() {
		return fmt.Errorf("bus: embedded server not ready: %w", ErrUnavailable)
	}
	nc, err := nats.Connect("", j.clientOptions(nats.InProcessServer(srv))...)
	if err != nil {
		return fmt.Errorf("bus: connect embedded: %w: %w", ErrUnavailable, err)
	}
	j.nc = nc
	j.log.Info("bus: embedded nats started", "dir", j.cfg.DataDir, "listen", srv.ClientURL())
	return nil
}

func (j *JetStream) connectExternal(ctx context.Context) error {
	extra := []nats.Option{
		nats.Timeout(boundedWait(ctx, startTimeout)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		// Notice a dead server (partition, crashed host) in ~30s, not nats.go's default
		// 2 min x 2 pings: until then a live subscription waits on a silent socket.
		nats.PingInterval(10 * time.Second),
		nats.MaxPingsOutstanding(3),
	}
	nc, err := nats.Connect(j.cfg.URL, j.clientOptions(extra...)...)
	if err != nil {
		return fmt.Errorf("bus: connect %s: %w: %w", redactURLs(j.cfg.URL), ErrUnavailable, err)
	}
	j.nc = nc
	j.log.Info("bus: connected to nats", "url", nc.ConnectedUrlRedacted())
	return nil
}

func (j *JetStream) clientOptions(extra ...nats.Option) []nats.Option {
	log := j.log
	opts := []nats.Option{
		nats.Name("realtime-bus"),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("bus: nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("bus: nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("bus: nats async error", "err", err)
		}),
	}
	opts = append(opts, extra...)
	return append(opts, j.cfg.NATSOptions...)
}

// createAttempt bounds one stream create-or-update request (ensureStream retries).
const createAttempt = 4 * time.Second

// ensureStream creates the stream or updates its config, and refreshes the epoch.
func (j *JetStream) ensureStream(ctx context.Context) error {
	sc := jetstream.StreamConfig{
		Name:       j.cfg.Stream,
		Subjects:   []string{j.prefix + ">"},
		Retention:  jetstream.LimitsPolicy,
		Storage:    jetstream.FileStorage,
		MaxAge:     j.cfg.MaxAge,
		MaxBytes:   j.cfg.MaxBytes,
		MaxMsgs:    -1,
		Replicas:   j.cfg.Replicas,
		Duplicates: j.cfg.DupWindow,
		Discard:    jetstream.DiscardOld,
	}
	// One request can be lost while the cluster is in flux (a meta leader election, a
	// stream just deleted, replica nodes still down): each attempt gets a few seconds,
	// and an unavailable or no-peers answer is retried until ctx ends. A refusal (a
	// conflicting config) is returned at once.
	var s jetstream.Stream
	var err error
	for {
		actx, cancel := context.WithTimeout(ctx, boundedWait(ctx, createAttempt))
		s, err = j.js.CreateOrUpdateStream(actx, sc)
		cancel()
		if err == nil || !(isUnavailable(err) || isNoPeers(err)) || ctx.Err() != nil {
			break
		}
		j.log.Warn("bus: create stream: retrying", "stream", j.cfg.Stream, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(boundedWait(ctx, 200*time.Millisecond)):
		}
	}
	if err != nil {
		return j.wrap("create stream "+j.cfg.Stream, err)
	}
	info := s.CachedInfo()
	j.setEpoch(info)
	j.log.Info("bus: stream ready", "stream", j.cfg.Stream, "epoch", j.Epoch(),
		"first", info.State.FirstSeq, "last", info.State.LastSeq)
	return nil
}

// Conn is the bus's NATS connection, for the other users of the same NATS (key-value
// buckets for flags and fleet health). The JetStream owns it: do not close it.
func (j *JetStream) Conn() *nats.Conn { return j.nc }

// ClientURL is the URL other processes use to reach the NATS this bus uses: the
// embedded server's TCP URL when Config.ListenAddr is set, the connected server
// (credentials redacted) with an external NATS, "" for an in-process-only server.
func (j *JetStream) ClientURL() string {
	if j.srv != nil {
		if j.cfg.ListenAddr == "" {
			return ""
		}
		return j.srv.ClientURL()
	}
	return j.nc.ConnectedUrlRedacted()
}

// Epoch is the epoch cached from the last stream create or Info (no round trip).
func (j *JetStream) Epoch() string {
	if p := j.epoch.Load(); p != nil {
		return *p
	}
	return ""
}

// Malformed counts stored messages that could not be decoded and were skipped.
func (j *JetStream) Malformed() uint64 { return j.malformed.Load() }

func (j *JetStream) setEpoch(info *jetstream.StreamInfo) string {
	e := epochOf(info.Created)
	if old := j.epoch.Swap(&e); old != nil && *old != e {
		j.log.Warn("bus: stream was recreated, epoch changed", "stream", j.cfg.Stream, "old", *old, "new", e)
	}
	return e
}

// epochOf derives the epoch from the stream's creation time: lowercase base36 of its
// unix nanoseconds, identical for every client of the same stream.
func epochOf(created time.Time) string {
	n := created.UnixNano()
	if n < 0 {
		n = -n
	}
	return strconv.FormatInt(n, 36)
}

// Info implements Bus. A stream that was deleted behind the bus's back is recreated
// (with a new epoch).
func (j *JetStream) Info(ctx context.Context) (Info, error) {
	if j.isClosed() {
		return Info{}, fmt.Errorf("bus: info: %w", ErrClosed)
	}
	s, err := j.js.Stream(ctx, j.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		j.log.Warn("bus: stream missing, recreating", "stream", j.cfg.Stream)
		if err = j.ensureStream(ctx); err == nil {
			s, err = j.js.Stream(ctx, j.cfg.Stream)
		}
	}
	if err != nil {
		return Info{}, j.wrap("info", err)
	}
	si := s.CachedInfo()
	return Info{Epoch: j.setEpoch(si), FirstSeq: si.State.FirstSeq, LastSeq: si.State.LastSeq}, nil
}

// Publish implements Bus. It fills in, in place, the ID (a NUID) and TS (now, unix ms)
// of events that lack them, so that a caller retrying the same events after an error
// is deduplicated. Seq is not touched: it is in the acks. Invalid events (channel,
// ID, data) fail the whole call before anything is sent, with an error wrapping
// protocol.ErrBadChannel or protocol.ErrBadEvent. If any event fails to be acked, the
// call returns nil acks and an error (wrapping ErrUnavailable for connectivity
// problems); some events may then have been appended: retry with the same IDs.
func (j *JetStream) Publish(ctx context.Context, evs []*protocol.Event) ([]Ack, error) {
	if j.isClosed() {
		return nil, fmt.Errorf("bus: publish: %w", ErrClosed)
	}
	if len(evs) == 0 {
		return nil, nil
	}
	msgs := make([]*nats.Msg, len(evs))
	now := time.Now().UnixMilli()
	for i, ev := range evs {
		if ev == nil {
			return nil, fmt.Errorf("bus: publish: event %d: %w: nil", i, protocol.ErrBadEvent)
		}
		if err := checkEvent(ev); err != nil {
			return nil, fmt.Errorf("bus: publish: event %d: %w", i, err)
		}
	}
	for i, ev := range evs {
		if ev.ID == "" {
			ev.ID = nuid.Next()
		}
		if ev.TS == 0 {
			ev.TS = now
		}
		m := nats.NewMsg(j.prefix + ev.Channel)
		m.Data = appendBody(nil, ev)
		msgs[i] = m
	}

	acks := make([]Ack, len(evs))
	pending := make([]int, len(evs))
	for i := range pending {
		pending[i] = i
	}
	for attempt := 0; ; attempt++ {
		failed, err := j.publishOnce(ctx, evs, msgs, pending, acks)
		if err == nil {
			return acks, nil
		}
		// A deleted stream shows as "no responders": recreate it once and resend
		// what was not acked (IDs make the resend safe).
		if attempt == 0 && isNoStream(err) && ctx.Err() == nil && !j.isClosed() {
			if _, ierr := j.Info(ctx); ierr == nil {
				pending = failed
				continue
			}
		}
		return nil, j.wrap("publish", err)
	}
}

// publishOnce sends msgs[idx] asynchronously and waits for their acks, filling acks.
// It returns the indices that failed and the first error.
func (j *JetStream) publishOnce(ctx context.Context, evs []*protocol.Event, msgs []*nats.Msg, idx []int, acks []Ack) ([]int, error) {
	futures := make([]jetstream.PubAckFuture, len(idx))
	var firstErr error
	var failed []int
	for k, i := range idx {
		m := nats.NewMsg(msgs[i].Subject) // fresh headers for a resend
		m.Data = msgs[i].Data
		f, err := j.js.PublishMsgAsync(m, jetstream.WithMsgID(evs[i].ID), jetstream.WithExpectStream(j.cfg.Stream))
		if err != nil {
			firstErr = err
			for _, r := range idx[k:] {
				failed = append(failed, r)
			}
			break
		}
		futures[k] = f
	}
	for k, f := range futures {
		if f == nil {
			break
		}
		i := idx[k]
		select {
		case pa := <-f.Ok():
			acks[i] = Ack{ID: evs[i].ID, Seq: pa.Sequence, Duplicate: pa.Duplicate}
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = err
			}
			failed = append(failed, i)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return failed, firstErr
}

// checkEvent validates what ends up in the subject, the Nats-Msg-Id header and the
// JSON body. The channel length limit is the engine's business, not the bus's.
func checkEvent(ev *protocol.Event) error {
	if err := protocol.ValidateChannel(ev.Channel, 1<<16); err != nil {
		return err
	}
	if ev.ID != "" {
		if err := protocol.ValidateID(ev.ID); err != nil {
			return err
		}
	}
	if len(ev.Data) > 0 && !json.Valid(ev.Data) {
		return fmt.Errorf("%w: data is not valid JSON", protocol.ErrBadEvent)
	}
	return nil
}

// wireEvent is the stored message body: the event without Seq (Seq is the stream
// sequence). Data is kept verbatim.
type wireEvent struct {
	ID      string          `json:"id"`
	Channel string          `json:"channel"`
	Type    string          `json:"type,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	TS      int64           `json:"ts"`
}

// appendBody appends the stored form of ev: protocol.AppendEvent without the sequence.
func appendBody(b []byte, ev *protocol.Event) []byte {
	e := *ev
	e.Seq = 0
	return protocol.AppendEvent(b, &e)
}

// decode turns a stored message into an event; the subject is authoritative for the
// channel. Failures are counted and logged; the message is skipped by the caller.
func (j *JetStream) decode(msg jetstream.Msg, seq uint64) (*protocol.Event, bool) {
	var w wireEvent
	subj := msg.Subject()
	ch, ok := strings.CutPrefix(subj, j.prefix)
	err := json.Unmarshal(msg.Data(), &w)
	if err == nil && (!ok || ch == "") {
		err = fmt.Errorf("subject outside prefix %q", j.prefix)
	}
	if err == nil && w.Channel != "" && w.Channel != ch {
		err = fmt.Errorf("body channel %q differs from subject", w.Channel)
	}
	if err != nil {
		n := j.malformed.Add(1)
		j.log.Warn("bus: skipping malformed message", "seq", seq, "subject", subj, "err", err, "malformed_total", n)
		return nil, false
	}
	return &protocol.Event{ID: w.ID, Seq: seq, Channel: ch, Type: w.Type, Data: w.Data, TS: w.TS}, true
}

// Subscribe implements Bus. after is a stream sequence: delivery starts at after+1
// (after == 0: from the oldest retained event). ctx governs the whole subscription,
// not only its setup. h runs on one goroutine, one event at a time, in sequence order;
// no sequence is delivered twice by one subscription. When the live consumer fails
// (server restart, reconnect) it is recreated from the last delivered sequence after a
// backoff, and the failure is logged. If the stream is recreated (epoch change), the
// caller must cancel the subscription and subscribe again from the new stream's head.
func (j *JetStream) Subscribe(ctx context.Context, after uint64, h Handler) error {
	if h == nil {
		return errors.New("bus: subscribe: nil handler")
	}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return fmt.Errorf("bus: subscribe: %w", ErrClosed)
	}
	j.wg.Add(1)
	j.mu.Unlock()

	runCtx, cancel := context.WithCancel(ctx)
	stopClose := context.AfterFunc(j.ctx, cancel)
	ls, err := j.openLive(ctx, after)
	if err != nil {
		stopClose()
		cancel()
		j.wg.Done()
		return j.wrap("subscribe", err)
	}
	go func() {
		defer j.wg.Done()
		defer cancel()
		defer stopClose()
		j.deliver(runCtx, ls, after, h)
	}()
	return nil
}

type liveSub struct {
	cons jetstream.Consumer
	it   jetstream.MessagesContext
}

func (j *JetStream) openLive(ctx context.Context, after uint64) (*liveSub, error) {
	cfg := jetstream.OrderedConsumerConfig{
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: liveInactive,
		MaxResetAttempts:  liveResetAttempts,
	}
	if after > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = after + 1
	}
	cons, err := j.js.OrderedConsumer(ctx, j.cfg.Stream, cfg)
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages(jetstream.PullExpiry(liveExpiry), jetstream.PullHeartbeat(liveHeartbeat))
	if err != nil {
		j.deleteConsumer(cons)
		return nil, err
	}
	return &liveSub{cons: cons, it: it}, nil
}

func (j *JetStream) closeLive(ls *liveSub) {
	ls.it.Stop()
	j.deleteConsumer(ls.cons)
}

func (j *JetStream) deleteConsumer(cons jetstream.Consumer) {
	ci := cons.CachedInfo()
	if ci == nil || !j.nc.IsConnected() {
		return // the server drops it after its inactivity threshold
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if err := j.js.DeleteConsumer(ctx, j.cfg.Stream, ci.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		j.log.Debug("bus: delete consumer", "consumer", ci.Name, "err", err)
	}
}

func (j *JetStream) deliver(ctx context.Context, ls *liveSub, last uint64, h Handler) {
	// Stop the iterator as soon as ctx is done, also while Next is busy recreating
	// the ordered consumer (which does not watch ctx).
	stop := context.AfterFunc(ctx, func() { ls.it.Stop() })
	defer func() {
		stop()
		j.closeLive(ls)
	}()
	failures := 0
	for {
		msg, err := ls.it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			j.log.Warn("bus: live consumer failed, recreating", "after", last, "err", err)
			stop()
			j.closeLive(ls)
			for {
				failures++
				if !sleepCtx(ctx, backoff(failures)) {
					// the deferred closeLive stops and deletes ls again: harmless
					return
				}
				nls, err := j.openLive(ctx, last)
				if err == nil {
					ls = nls
					stop = context.AfterFunc(ctx, func() { nls.it.Stop() })
					break
				}
				j.log.Warn("bus: recreate live consumer", "after", last, "err", err)
			}
			continue
		}
		failures = 0
		meta, err := msg.Metadata()
		if err != nil {
			n := j.malformed.Add(1)
			j.log.Warn("bus: skipping message without metadata", "err", err, "malformed_total", n)
			continue
		}
		seq := meta.Sequence.Stream
		if seq <= last {
			continue
		}
		last = seq
		if ev, ok := j.decode(msg, seq); ok {
			h(ev)
		}
	}
}

// Replay implements Bus. It uses an ephemeral, memory-backed, ack-less pull consumer
// (what an ordered consumer uses) filtered on the channels' subjects and starting at
// after+1, fetches only what is stored (no-wait fetches, never waiting for new events)
// and deletes the consumer before returning. Channel names are checked with
// protocol.ValidateChannel (errors wrap protocol.ErrBadChannel). A lost delivery is
// detected (consumer sequence gap) and reported as an error wrapping ErrUnavailable,
// never as a silently shorter replay. fn's error is returned as is.
func (j *JetStream) Replay(ctx context.Context, channels []string, after, upTo uint64, fn func(*protocol.Event) error) error {
	if j.isClosed() {
		return fmt.Errorf("bus: replay: %w", ErrClosed)
	}
	if upTo <= after || len(channels) == 0 {
		return nil
	}
	subjects := make([]string, 0, len(channels))
	seen := make(map[string]bool, len(channels))
	for _, ch := range channels {
		if err := protocol.ValidateChannel(ch, 1<<16); err != nil {
			return fmt.Errorf("bus: replay: %w", err)
		}
		if !seen[ch] {
			seen[ch] = true
			subjects = append(subjects, j.prefix+ch)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(j.ctx, cancel)()

	return replayContinuing(ctx, after, func(after uint64) (uint64, error) {
		return j.replayFrom(ctx, subjects, after, upTo, fn)
	})
}

// replicaBehindWait is the first pause before a replay goes on with a new consumer
// after its replica was found behind (doubling up to 1 s).
const replicaBehindWait = 20 * time.Millisecond

// replayContinuing runs once (one replay consumer) from after. A consumer placed on a
// replica that has not stored (or applied) the newest events delivers less than the
// stream leader holds, and verifyReplayTail reports errReplicaBehind. The events
// delivered so far were in order, so the replay goes on from the last one with a new
// consumer (placed anew; the replica catches up meanwhile) until ctx ends, instead of
// failing the client, which would come back to the same replica. Any other outcome is
// returned as is.
func replayContinuing(ctx context.Context, after uint64, once func(after uint64) (last uint64, err error)) error {
	wait := replicaBehindWait
	for {
		last, err := once(after)
		if !errors.Is(err, errReplicaBehind) {
			return err
		}
		if !sleepCtx(ctx, wait) {
			return err
		}
		after, wait = last, min(2*wait, time.Second)
	}
}

// replayFrom is one replay consumer's part of Replay: every stored event of subjects
// with after < seq <= upTo, in order, to fn. It returns the sequence of the last
// message it received, and errReplicaBehind (wrapped) when the consumer's replica
// delivered less than the stream holds.
func (j *JetStream) replayFrom(ctx context.Context, subjects []string, after, upTo uint64, fn func(*protocol.Event) error) (uint64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cc := jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		Replicas:          1,
		InactiveThreshold: replayInactive,
	}
	if after > 0 {
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = after + 1
	}
	if len(subjects) == 1 {
		cc.FilterSubject = subjects[0]
	} else {
		cc.FilterSubjects = subjects
	}
	cons, err := j.js.CreateConsumer(ctx, j.cfg.Stream, cc)
	if err != nil {
		return after, j.wrap("replay", err)
	}
	defer j.deleteConsumer(cons)

	pending := cons.CachedInfo().NumPending // matching messages stored after `after`
	var lastCons uint64                     // consumer sequence of the last message
	noResp := 0                             // fetches answered "no responders" (fetchRetry)
	lastSeq := after                        // stream sequence of the last message
	for pending > 0 {
		if err := ctx.Err(); err != nil {
			return lastSeq, j.wrap("replay", err)
		}
		batch := replayBatch
		if span := upTo - after; span < uint64(batch) {
			batch = int(span)
		}
		mb, err := cons.FetchNoWait(batch)
		if err != nil {
			if fetchRetry(ctx, err, &noResp) {
				continue
			}
			return lastSeq, j.wrap("replay", err)
		}
		got := 0
		done := false
		for msg := range mb.Messages() {
			if done {
				continue // drain
			}
			got++
			meta, err := msg.Metadata()
			if err != nil {
				n := j.malformed.Add(1)
				j.log.Warn("bus: replay: skipping message without metadata", "err", err, "malformed_total", n)
				continue
			}
			if meta.Sequence.Consumer != lastCons+1 {
				cancel()
				return lastSeq, j.wrap("replay", fmt.Errorf("%w: delivery gap after consumer seq %d", ErrUnavailable, lastCons))
			}
			lastCons = meta.Sequence.Consumer
			pending = meta.NumPending
			seq := meta.Sequence.Stream
			lastSeq = seq
			if seq > upTo {
				done = true
				continue
			}
			if ev, ok := j.decode(msg, seq); ok {
				if err := fn(ev); err != nil {
					cancel()
					return lastSeq, err
				}
			}
			if seq >= upTo {
				done = true
			}
		}
		if err := mb.Error(); err != nil {
			if got == 0 && fetchRetry(ctx, err, &noResp) {
				continue
			}
			return lastSeq, j.wrap("replay", err)
		}
		if done {
			return lastSeq, nil
		}
		if got == 0 {
			// Nothing came although the last count said more is stored: ask again
			// (retention may have dropped it, or the server was slow to answer).
			ci, err := cons.Info(ctx)
			if err != nil {
				return lastSeq, j.wrap("replay", err)
			}
			pending = ci.NumPending
			if pending > 0 && !sleepCtx(ctx, 10*time.Millisecond) {
				return lastSeq, j.wrap("replay", ctx.Err())
			}
		}
	}
	return lastSeq, j.verifyReplayTail(ctx, subjects, lastSeq, upTo)
}

// Close implements Bus: it stops every subscription (waiting for its goroutine),
// closes the NATS connection and shuts the embedded server down. Pending Publish,
// Replay and Info calls fail with ErrClosed. Close is idempotent.
func (j *JetStream) Close() error {
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return nil
	}
	j.closed = true
	j.mu.Unlock()
	j.cancel()

	done := make(chan struct{})
	go func() { j.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeGrace):
		j.log.Warn("bus: subscriptions slow to stop, closing the connection under them")
	}
	j.nc.Close()
	<-done
	if j.srv != nil {
		j.srv.Shutdown()
		j.srv.WaitForShutdown()
	}
	j.log.Info("bus: closed")
	return nil
}

func (j *JetStream) isClosed() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.closed
}

// wrap adds context to err and classifies it: ErrClosed after Close, ErrUnavailable
// for connectivity, timeouts and a JetStream that cannot answer.
func (j *JetStream) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if j.isClosed() {
		return fmt.Errorf("bus: %s: %w: %w", op, ErrClosed, err)
	}
	if isUnavailable(err) && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("bus: %s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("bus: %s: %w", op, err)
}

func isUnavailable(err error) bool {
	for _, target := range []error{
		nats.ErrNoResponders, nats.ErrTimeout, nats.ErrConnectionClosed, nats.ErrConnectionDraining,
		nats.ErrConnectionReconnecting, nats.ErrDisconnected, nats.ErrNoServers, nats.ErrStaleConnection,
		jetstream.ErrNoStreamResponse, jetstream.ErrAsyncPublishTimeout, jetstream.ErrConnectionClosed,
		jetstream.ErrServerShutdown, jetstream.ErrJetStreamNotEnabled, jetstream.ErrJetStreamNotEnabledForAccount,
		jetstream.ErrTooManyStalledMsgs, jetstream.ErrJetStreamPublisherClosed, jetstream.ErrNoHeartbeat,
		jetstream.ErrStreamNotFound, context.DeadlineExceeded,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code == 503
}

// errCodeClusterNoPeers: "no suitable peers for placement" (a replica's node is
// down, as while a cluster forms or recovers). nats.go has no constant for it.
const errCodeClusterNoPeers jetstream.ErrorCode = 10005

func isNoPeers(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeClusterNoPeers
}

func isNoStream(err error) bool {
	return errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrStreamNotFound)
}

func boundedWait(ctx context.Context, d time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		if r := time.Until(dl); r < d {
			return max(r, time.Millisecond)
		}
	}
	return d
}

func backoff(failures int) time.Duration {
	d := 100 * time.Millisecond << min(failures, 10)
	return min(d, maxResubBackoff)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func redactURLs(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "***" + p[at:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// serverLogger routes the embedded nats-server's log to slog. Notices (startup
// banner, ...) go to Debug.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) {
	s.l.Debug("nats-server: " + fmt.Sprintf(format, v...))
}
func (s serverLogger) Warnf(format string, v ...any) {
	s.l.Warn("nats-server: " + fmt.Sprintf(format, v...))
}
func (s serverLogger) Fatalf(format string, v ...any) {
	s.l.Error("nats-server: " + fmt.Sprintf(format, v...))
}
func (s serverLogger) Errorf(format string, v ...any) {
	s.l.Error("nats-server: " + fmt.Sprintf(format, v...))
}
func (s serverLogger) Debugf(format string, v ...any) {
	s.l.Debug("nats-server: " + fmt.Sprintf(format, v...))
}
func (s serverLogger) Tracef(format string, v ...any) {
	s.l.Debug("nats-server: " + fmt.Sprintf(format, v...))
}
