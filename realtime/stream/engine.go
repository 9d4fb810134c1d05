package stream

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
)

// Engine owns the connection pool, the bus subscription and the sweeper. Create it with
// New, call Start, mount Handler (or the Serve* methods), and end it with Shutdown
// (drain) or Close (immediate). Safe for concurrent use.
type Engine struct {
	// immutable after New
	cfg         Config
	bus         bus.Bus
	log         *slog.Logger
	metrics     *Metrics
	pool        *pool
	registry    *prometheus.Registry
	replaySlots chan struct{} // semaphore of bus replays; never closed
	batch       *batchGovernor
	fl          *flusher  // runs the connections' writers (flusher.go)
	fan         *fanout   // frames dispatched events and queues them (fanout.go)
	budget      *budget   // bound of the bytes queued to all connections (budget.go)
	lp          *longPoll // waiting polls and the streaming switch (poll_waiters.go, switch.go)
	noParker    bool      // tests and measurements: finish partial writes on the slow path

	ctx    context.Context // cancelled by Close: ends every connection and the sweeper
	cancel context.CancelFunc

	epoch    atomic.Pointer[string]
	draining atomic.Bool
	started  atomic.Bool

	mu      sync.Mutex
	clients map[*Client]struct{}
	conns   sync.WaitGroup // one per registered client, done at the end of its teardown

	bg sync.WaitGroup // sweeper and bus subscription owner

	lastPing time.Time // owned by the sweeper (sweep): when it last pinged every connection
	// fanned: every dispatched event with seq <= fanned is in the queue of every
	// connection that was subscribed to its channel. Written by the fan-out after each
	// round (advanceFanned) and by resets of the position (read by liveHead).
	fanned atomic.Uint64
	// phaseSeq numbers the connections for their fan-out phases (Client.phase).
	phaseSeq atomic.Uint32

	resub        resubscriber  // live subscription generation (epoch.go)
	epochChanges atomic.Uint64 // stream recreations noticed (epoch.go)
	replayLoad   replayLoad    // demand for bus replay slots (scale.go)
	ext          extensions    // presence and history (requests.go)
}

// New builds an engine over b. It does not touch the bus until Start.
func New(cfg Config, b bus.Bus) (*Engine, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errors.New("stream: nil bus")
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg:         c,
		bus:         b,
		log:         c.Logger.With("component", "stream", "instance", c.Instance),
		metrics:     newMetrics(),
		pool:        newPool(c.WindowEvents),
		replaySlots: make(chan struct{}, c.MaxBusReplays),
		ctx:         ctx,
		cancel:      cancel,
		clients:     map[*Client]struct{}{},
	}
	e.lp = newLongPoll(&c, &e.metrics.poll)
	empty := ""
	e.epoch.Store(&empty)
	e.fl = newFlusher(e.cfg.Writers)
	e.batch = newBatchGovernor(&e.cfg, &e.metrics.eventFrames, &e.fl.maxWait)
	e.fan = newFanout(e)
	e.budget = newBudget(e.cfg.QueueBudget)
	e.registry = prometheus.NewRegistry()
	e.registry.MustRegister(newCollector(e), e.metrics.writeLatency, e.metrics.publishLatency,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newPollCollector(e))
	e.ext.init(e)
	return e, nil
}

// Start reads the bus position, subscribes to live events and starts the sweeper.
func (e *Engine) Start(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("stream: already started")
	}
	info, err := e.bus.Info(ctx)
	if err != nil {
		return fmt.Errorf("stream: bus info: %w", err)
	}
	e.epoch.Store(&info.Epoch)
	e.pool.reset(info.LastSeq)
	e.fanned.Store(info.LastSeq)
	if err := e.subscribeBus(info.LastSeq); err != nil {
		return fmt.Errorf("stream: subscribe: %w", err)
	}
	e.lastPing = e.cfg.now() // the first ping goes out one interval after the start
	e.every(e.cfg.sweepPeriod(), e.sweep)
	e.every(e.cfg.EpochCheckInterval, func(time.Time) { e.checkEpoch() })
	e.every(governPeriod, func(time.Time) { e.batch.tick(governPeriod) })
	e.bg.Add(2)
	go func() {
		defer e.bg.Done()
		e.fan.run(e.ctx.Done())
	}()
	go func() {
		defer e.bg.Done()
		e.enforceBudget()
	}()
	e.log.Info("engine started", "epoch", info.Epoch, "head", info.LastSeq)
	return nil
}

// Epoch is the bus stream's epoch as of Start.
func (e *Engine) Epoch() string { return *e.epoch.Load() }

// Registry is the Prometheus registry with the engine's figures.
func (e *Engine) Registry() *prometheus.Registry { return e.registry }

// Snapshot returns this instance's figures.
func (e *Engine) Snapshot() Snapshot {
	s := e.metrics.snapshot()
	s.Instance = e.cfg.Instance
	s.BatchWindowMs = float64(e.batch.current()) / float64(time.Millisecond)
	s.QueuedBytes, s.QueueBudget = e.budget.used.Load(), e.budget.limit
	s.ParkedWriters, s.WriteStalls = e.fl.parked.Load(), e.fl.stalls.Load()
	if e.fl.readPark != nil {
		s.ParkedReaders = int64(e.fl.readPark.waiting())
	}
	s.SlowLaneTurns = e.fl.slowTurns.Load()
	s.Epoch = e.Epoch()
	e.pool.mu.Lock()
	s.HeadSeq = e.pool.head
	e.pool.mu.Unlock()
	if b, ok := e.bus.(interface{ State() string }); ok {
		s.Breaker = b.State()
	}
	return s
}

// dispatch runs on the bus delivery goroutine: encode once, record, hand to the
// fan-out.
func (e *Engine) dispatch(ev *protocol.Event) {
	oe := &outEvent{seq: ev.Seq, channel: ev.Channel, enc: protocol.EncodeEvent(ev), at: time.Now()}
	if !e.pool.record(oe) {
		return
	}
	e.metrics.eventsDispatched.Add(1)
	e.fan.add(oe)
	e.lp.wakeChannel(oe.channel) // after the window holds oe (poll_waiters.go)
}

// startFlusher starts the flusher's goroutines on first use.
func (e *Engine) startFlusher() {
	tick := min(250*time.Millisecond, max(e.cfg.WriteTimeout/4, 10*time.Millisecond))
	e.fl.startOnce(tick, e.checkStalls)
}

// checkStalls resets the connections whose sockets stalled (flusher's stall checker).
func (e *Engine) checkStalls(now time.Time) {
	for _, c := range e.fl.waitingClients() {
		c.checkStall(now)
	}
}

// every runs fn every d on a goroutine of the engine's background group until Close.
func (e *Engine) every(d time.Duration, fn func(now time.Time)) {
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-e.ctx.Done():
				return
			case now := <-t.C:
				fn(now)
			}
		}
	}()
}

// sweep runs every Config.sweepPeriod (a fifth of the heartbeat interval) on the
// sweeper goroutine: it closes the connections from which nothing was read for
// HeartbeatTimeout (so a silent one goes at most one period after the timeout), and
// pings every connection once per heartbeat interval.
func (e *Engine) sweep(now time.Time) {
	var ping *frame
	if now.Sub(e.lastPing) >= e.cfg.HeartbeatInterval-e.cfg.sweepPeriod()/2 {
		e.lastPing = now
		// The head is read before any ping is queued, so each ping is queued after every
		// event up to it (liveHead): a client may take it as its cursor. One frame for
		// every connection; upTo makes a lagging one write its events up to seq first.
		seq, epoch := e.liveHead()
		ping = newTextFrame(protocol.Marshal(protocol.Ping{Type: protocol.TypePing, TS: now.UnixMilli(), Seq: seq, Epoch: epoch}))
		ping.upTo = seq
	}
	deadline := now.Add(-e.cfg.HeartbeatTimeout).UnixNano()
	for _, c := range e.snapshotClients() {
		if c.lastRead.Load() < deadline {
			c.requestClose(protocol.CloseHeartbeat, "heartbeat timeout", 0, DiscHeartbeat, false)
			continue
		}
		if ping != nil && c.welcomed.Load() {
			c.enqueue(item{fr: ping})
		}
	}
}

// liveHead returns the position a server ping carries: the highest sequence up to
// which every dispatched event is already in its subscribers' queues (or, for a
// lagging connection, in the replay window it reads from), and its epoch. A frame
// queued to a connection after this call follows every event of its channels with
// seq <= the returned one (queues are FIFO, the fan-out queues a round's events before
// it advances fanned, and a lagging connection's writer reads the window up to a
// ping's upTo before it writes the ping), so a client that received that frame, and
// the answers to its subscribes, has everything up to it. resub.mu keeps the pair
// consistent across a stream recreation (checkEpoch resets both under it and under
// pool.mu, and bumps pool.gen: the fan-out advances fanned under pool.mu for events of
// the current generation only).
func (e *Engine) liveHead() (seq uint64, epoch string) {
	e.resub.mu.RLock()
	defer e.resub.mu.RUnlock()
	return e.fanned.Load(), e.Epoch()
}

// advanceFanned records that every event up to last (the last of a fan-out round) is
// queued; last of a stream that was since recreated is ignored.
func (e *Engine) advanceFanned(last *outEvent) {
	e.pool.mu.Lock()
	if last.gen == e.pool.gen && last.seq > e.fanned.Load() {
		e.fanned.Store(last.seq)
	}
	e.pool.mu.Unlock()
}

func (e *Engine) snapshotClients() []*Client {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]*Client, 0, len(e.clients))
	for c := range e.clients {
		out = append(out, c)
	}
	return out
}

// Clients calls fn for every open connection (for policy hooks: flags, token expiry).
func (e *Engine) Clients(fn func(*Client)) {
	for _, c := range e.snapshotClients() {
		fn(c)
	}
}

// Kick closes c with code after writing frame (if any); used by policy hooks.
func (c *Client) Kick(frame []byte, code protocol.CloseCode, text string, retryMs int64) {
	if frame != nil {
		c.enqueueCtrl(frame)
	}
	c.requestClose(code, text, retryMs, DiscKicked, true)
}

func (e *Engine) register(c *Client) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.draining.Load() || e.ctx.Err() != nil {
		return false
	}
	e.clients[c] = struct{}{}
	e.conns.Add(1)
	e.metrics.active.Add(1)
	e.metrics.connectionsTotal.Add(1)
	return true
}

func (e *Engine) unregister(c *Client) {
	e.mu.Lock()
	delete(e.clients, c)
	e.mu.Unlock()
	e.metrics.active.Add(-1)
	e.conns.Done()
}

// retryHint is a jittered delay in [RetryMin, RetryMax], in milliseconds, so that
// clients told to come back do not all come back at once.
func (e *Engine) retryHint() int64 {
	lo, hi := e.cfg.RetryMin, e.cfg.RetryMax
	return (lo + time.Duration(rand.Int64N(int64(hi-lo)+1))).Milliseconds()
}

// Shutdown drains: new connections are refused (503), every connection is told to
// reconnect after a jittered delay (4101) once its queue is flushed, and Shutdown waits
// for them to end or ctx to expire, then closes what is left. The bus is not closed.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.draining.Store(true)
	e.lp.stop()                    // waiting polls answer 503 + Retry-After now
	e.fan.flush(ctx, e.ctx.Done()) // what was dispatched is queued before the closes
	for _, c := range e.snapshotClients() {
		c.requestClose(protocol.CloseShutdown, "server shutting down", e.retryHint(), DiscShutdown, true)
	}
	done := make(chan struct{})
	go func() { e.conns.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("stream: drain: %w", ctx.Err())
	}
	e.Close()
	return err
}

// Close ends every connection at once and stops the sweeper and the bus subscription.
// It waits for every connection's teardown.
func (e *Engine) Close() error {
	e.draining.Store(true)
	e.cancel()
	for _, c := range e.snapshotClients() {
		c.abort() // ends its read, and the owner tears it down
	}
	e.lp.stop()
	e.lp.wg.Wait()
	e.conns.Wait()
	e.ext.wait()
	e.fl.stop()
	e.bg.Wait()
	return nil
}

func newSessionID() string {
	var b [12]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Handler serves the engine's routes on a fresh mux: the stream, poll, publish, metrics, history, presence and
// Prometheus endpoints.
func (e *Engine) Handler() http.Handler {
	mux := http.NewServeMux()
	e.Mount(mux)
	return mux
}

// Mount registers the engine's routes on mux.
func (e *Engine) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /v2/realtime/stream", e.ServeStream)
	mux.HandleFunc("GET /v2/realtime/poll", e.ServePoll)
	mux.HandleFunc("OPTIONS /v2/realtime/poll", e.ServePollPreflight)
	mux.HandleFunc("POST /v2/realtime/publish", e.ServePublish)
	mux.HandleFunc("GET /v2/realtime/metrics", e.ServeMetrics)
	mux.HandleFunc("GET /v2/realtime/history", e.ServeHistory)
	mux.HandleFunc("GET /v2/realtime/presence", e.ServePresence)
	mux.Handle("GET /metrics", promhttp.HandlerFor(e.registry, promhttp.HandlerOpts{}))
}
