package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	// ListenAuth is what clients of that listener must present: a Token, or a User and
	// Password (no other field applies). The bus's own in-process connection presents
	// it too. Zero: the listener takes anyone who reaches it (loopback only, see
	// server.Options.Validate).
	ListenAuth ClientAuth

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
	c.MaxAge, c.MaxBytes, c.DupWindow = retention(c.MaxAge, c.MaxBytes, c.DupWindow, -1)
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Logger = c.Logger.With("component", "bus")
	return nil
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
		// Direct gets answer history requests from the per-subject index (bus_history.go).
		AllowDirect: true,
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
