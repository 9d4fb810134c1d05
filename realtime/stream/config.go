package stream

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"time"

	"encore.app/realtime/access"
	"encore.app/realtime/origin"
	"encore.app/realtime/protocol"
)

// Config holds the engine's settings. Zero values take the documented defaults.
type Config struct {
	// Instance names this engine in welcome frames and metrics (default: hostname-pid).
	Instance string

	// HeartbeatInterval between server pings (default 25s). A connection from which
	// nothing was read for HeartbeatTimeout (default 2x interval) is closed (4001) by
	// the next sweep: sweeps run every fifth of the interval (sweepPeriod).
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// WriteTimeout bounds how long a connection's socket may take nothing while data
	// waits for it (default 10s): the connection is then reset (write_error). Writes
	// never block a writer; this is how long a stalled socket may keep its data.
	WriteTimeout time.Duration
	// Writers is how many goroutines write to connections (default GOMAXPROCS - 1, at
	// least 1: one processor is always left to the publish path and the readers). No
	// socket can hold one: what a socket does not take at once waits for it to be
	// writable, off the writers.
	Writers int
	// SendBuffer bounds each stream socket's kernel send buffer (SO_SNDBUF, default
	// 256 KiB; Linux doubles the figure). A socket starts at 8 KiB and doubles it when it
	// drains full buffers, so one that never reads keeps ~20 KB of kernel memory while
	// one that reads gets what its path needs. Negative keeps the kernel's
	// autotuning, which grows the buffer of a socket that does not drain to megabytes.
	SendBuffer int

	// QueueMaxEvents and QueueMaxBytes bound each connection's queue (defaults 4096
	// events, 4 MiB). Overflow closes the connection as a slow consumer.
	QueueMaxEvents int
	QueueMaxBytes  int
	// QueueBudget bounds the bytes queued to all connections together (default 1/64 of
	// the memory available to the process, between 64 MiB and 1 GiB; a frame shared by
	// several connections counts for each). Past it, the connections holding the most
	// are closed with 4105 and a retry hint until the sum is under 3/4 of it (budget.go).
	QueueBudget int64
	// BatchMaxEvents is the most events in one frame (default 100). Events are framed
	// per channel as soon as they arrive; only those that arrive while the fan-out or
	// the connection's writer is busy share a frame or a write, so an idle connection's
	// first event is written at once.
	BatchMaxEvents int
	// BatchWindow, BatchWindowMax and FrameBudget apply when the instance is short of
	// CPU (its writers fall behind, or it writes more than FrameBudget event frames per
	// second, default 200000): a channel's events then wait to share a frame for a
	// window that opens at BatchWindow (default 20ms) and widens up to BatchWindowMax
	// (default 50ms) so that busy connections fit the budget (window.go). It closes
	// again when the load is gone. BatchWindowMax <= BatchWindow asks for a fixed
	// window that is always on.
	BatchWindow    time.Duration
	BatchWindowMax time.Duration
	FrameBudget    int
	// CompressionThreshold: frames of at least this many bytes are deflated for clients
	// that negotiated permessage-deflate (default 1024; negative disables compression).
	CompressionThreshold int

	// MaxFrameBytes bounds one client frame (default 64 KiB; larger closes with 1009).
	MaxFrameBytes int64
	// MaxSubscriptions per connection (default 100); MaxChannelLength (default 128).
	MaxSubscriptions int
	MaxChannelLength int
	// MaxBadFrames: after this many refused frames the connection is closed 4400 (default 50).
	MaxBadFrames int

	// WindowEvents is the size of the in-memory replay window (default 10000 events).
	WindowEvents int
	// ReplayTimeout bounds one recovery from the bus (default 10s). MaxBusReplays caps
	// concurrent bus recoveries (default 32); a connection that cannot get a slot within
	// ReplayWait (default 2s) is closed 4103 with a jittered retry hint.
	ReplayTimeout time.Duration
	MaxBusReplays int
	ReplayWait    time.Duration
	// EpochCheckInterval is how often the engine asks the bus whether its stream was
	// recreated (default 5s); see epoch.go.
	EpochCheckInterval time.Duration

	// PublisherKey protects POST /v2/realtime/publish (Bearer token). Empty refuses
	// every publish unless AllowAnonymousPublish is set (dev mode only).
	PublisherKey          string
	AllowAnonymousPublish bool
	// MaxPublishBytes (default 1 MiB), MaxPublishEvents (default 1000) and MaxEventData
	// (default 64 KiB) bound one publish request.
	MaxPublishBytes  int64
	MaxPublishEvents int
	MaxEventData     int
	// CheckEvent, when set, is one more check of every published event, after the
	// engine's own (ValidateEvents): the server sets it to the typed channels' payload
	// validation (encore.app/realtime/typed) when that is on. An error refuses the
	// event (and its batch), counted as publishRefusals["payload"]. Must be safe for
	// concurrent use and must not block.
	CheckEvent func(ev *protocol.Event) error

	// RetryMin and RetryMax bound the jittered retry hints sent with 4100/4101/4103
	// closes (defaults 500ms and 5s).
	RetryMin time.Duration
	RetryMax time.Duration

	// Authenticate identifies the caller of the stream (default: anonymous). An error
	// refuses the upgrade; AuthError decides the status.
	Authenticate func(r *http.Request) (*Identity, error)
	// Authorize decides whether id may read channel (default: everything).
	Authorize func(id *Identity, channel string) error
	// Reauthenticate checks the token of an "auth" frame (a refresh before expiry) and
	// returns the caller's new identity; the engine accepts it only for the same user.
	// Nil: auth frames are answered with a bad_token error.
	Reauthenticate func(cur *Identity, token string) (*Identity, error)
	// Admit runs after Authenticate and before the upgrade (admission control: per-user
	// connection caps, overload gates). resuming reports a cursor in the request. A
	// non-nil release runs once when the connection ends (also when it never opens). An
	// *AuthError chooses the answer. Nil admits everyone.
	Admit func(r *http.Request, id *Identity, resuming bool) (release func(), err error)
	// ClientMessageRate bounds the frames a connection may send per second (default 10,
	// burst ClientMessageBurst, default 50). A frame over the rate is answered with a
	// rate_limited error and ignored; ClientMessageBurst such frames in a row close the
	// connection with 4102 and a retry hint. A negative rate disables the limit.
	ClientMessageRate  float64
	ClientMessageBurst int
	// AcceptOrigins lists allowed Origin host patterns for browsers (coder/websocket
	// OriginPatterns); empty allows only same-host origins. Origins, when set, is the
	// policy to use instead (the server shares one with the flags API); the stream and
	// the poll check it before anything else, and polls carry its CORS headers.
	AcceptOrigins []string
	Origins       *origin.Policy

	// PollTimeout is how long a long-poll waits for events when the request names no
	// timeout (default 25s); MaxPollTimeout caps what a request may ask (default 60s).
	// PollMaxEvents caps the events of one poll answer (default 1000; the cursor lets
	// the client continue). Answers of at least PollGzipThreshold bytes (default 1024;
	// negative disables) are gzipped for clients that accept it.
	PollTimeout       time.Duration
	MaxPollTimeout    time.Duration
	PollMaxEvents     int
	PollGzipThreshold int
	// MaxPollWaiters bounds the polls waiting on this instance (default 10000; more
	// are answered 503 + Retry-After). MaxPollsPerUser bounds the concurrent polls of
	// one authenticated user (default 10; more are answered 429 + Retry-After).
	MaxPollWaiters  int
	MaxPollsPerUser int

	// StreamingAllowed decides whether a user may use the stream (default: everyone).
	// A user who may not gets close 4300 right after the upgrade and poll answers with
	// transport "poll". Engine.ApplyStreamingFlag replaces it at run time.
	StreamingAllowed func(userID string) bool
	// PollProbeInterval is the retry hint (jittered to [1/2, 1] of it) with 4300 closes
	// and "poll" answers: when a client should probe the stream again (default 60s).
	// StreamReturnSpread: when streaming is allowed again, waiting polls answer
	// "stream" after a random delay up to this, so clients return spread out
	// (default 500ms).
	PollProbeInterval  time.Duration
	StreamReturnSpread time.Duration

	// WelcomeFlags returns the feature flags evaluated for a user, sent in the welcome
	// frame (docs/protocol.md). Nil: the welcome carries no flags. Must not block.
	WelcomeFlags func(userID string) map[string]bool

	// OnHealth receives client health reports (feeds monitoring). Must not block.
	OnHealth func(c *Client, h *protocol.HealthReport)

	// Presence and history (presence.go, history.go). Presence tracks every
	// subscription (nil: presence is off; snapshot requests are refused).
	// PresenceMaxMembers caps the members of one snapshot (default 1000; a request
	// asks for 100 by default). HistoryMaxEvents caps the events of one history answer
	// (default 1000; 100 by default) and HistoryMaxBytes its size (default 1 MiB).
	Presence           Presence
	PresenceMaxMembers int
	HistoryMaxEvents   int
	HistoryMaxBytes    int

	Logger *slog.Logger

	// now is the clock of the heartbeat bookkeeping (when a frame was read); tests
	// inject one to drive Engine.sweep with virtual times. Default time.Now.
	now func() time.Time
}

// Identity is who holds a connection (realtime/access, shared with auth and limits).
type Identity = access.Identity

// AuthError is returned by Authenticate (or Admit) to choose the answer of a refusal.
type AuthError = access.AuthError

// sweepsPerHeartbeat is how many times per heartbeat interval the sweeper looks for
// silent connections: a connection silent for HeartbeatTimeout is closed at most
// HeartbeatInterval/sweepsPerHeartbeat later.
const sweepsPerHeartbeat = 5

// sweepPeriod is the sweeper's period (Engine.sweep).
func (c *Config) sweepPeriod() time.Duration { return c.HeartbeatInterval / sweepsPerHeartbeat }

// welcomeFlags is Config.WelcomeFlags for id (nil without the hook).
func (e *Engine) welcomeFlags(id *Identity) map[string]bool {
	if e.cfg.WelcomeFlags == nil {
		return nil
	}
	return e.cfg.WelcomeFlags(id.UserID)
}

func (c *Config) withDefaults() (Config, error) {
	d := *c
	if d.Instance == "" {
		h, _ := os.Hostname()
		d.Instance = h + "-" + strconv.Itoa(os.Getpid())
	}
	def := func(v *time.Duration, x time.Duration) {
		if *v <= 0 {
			*v = x
		}
	}
	defi := func(v *int, x int) {
		if *v <= 0 {
			*v = x
		}
	}
	def(&d.HeartbeatInterval, 25*time.Second)
	def(&d.HeartbeatTimeout, 2*d.HeartbeatInterval)
	def(&d.WriteTimeout, 10*time.Second)
	defi(&d.QueueMaxEvents, 4096)
	defi(&d.QueueMaxBytes, 4<<20)
	if d.QueueBudget <= 0 {
		d.QueueBudget = defaultQueueBudget()
	}
	if d.SendBuffer == 0 {
		d.SendBuffer = 256 << 10
	}
	defi(&d.BatchMaxEvents, 100)
	def(&d.BatchWindow, 20*time.Millisecond)
	def(&d.BatchWindowMax, max(50*time.Millisecond, d.BatchWindow))
	defi(&d.FrameBudget, 200000)
	if d.CompressionThreshold == 0 {
		d.CompressionThreshold = 1024
	}
	if d.MaxFrameBytes <= 0 {
		d.MaxFrameBytes = 64 << 10
	}
	defi(&d.MaxSubscriptions, 100)
	defi(&d.MaxChannelLength, 128)
	defi(&d.MaxBadFrames, 50)
	defi(&d.WindowEvents, 10000)
	def(&d.ReplayTimeout, 10*time.Second)
	defi(&d.MaxBusReplays, 32)
	def(&d.ReplayWait, 2*time.Second)
	def(&d.EpochCheckInterval, 5*time.Second)
	if d.MaxPublishBytes <= 0 {
		d.MaxPublishBytes = 1 << 20
	}
	defi(&d.MaxPublishEvents, 1000)
	defi(&d.MaxEventData, 64<<10)
	if d.ClientMessageRate == 0 {
		d.ClientMessageRate = 10
	}
	defi(&d.ClientMessageBurst, 50)
	def(&d.PollTimeout, 25*time.Second)
	def(&d.MaxPollTimeout, 60*time.Second)
	d.MaxPollTimeout = max(d.MaxPollTimeout, d.PollTimeout)
	defi(&d.PollMaxEvents, 1000)
	if d.PollGzipThreshold == 0 {
		d.PollGzipThreshold = 1024
	}
	defi(&d.MaxPollWaiters, 10000)
	defi(&d.MaxPollsPerUser, 10)
	def(&d.PollProbeInterval, 60*time.Second)
	if d.StreamReturnSpread == 0 {
		d.StreamReturnSpread = 500 * time.Millisecond
	}
	defi(&d.PresenceMaxMembers, DefaultPresenceMaxMembers)
	defi(&d.HistoryMaxEvents, DefaultHistoryMaxEvents)
	defi(&d.HistoryMaxBytes, DefaultHistoryMaxBytes)
	def(&d.RetryMin, 500*time.Millisecond)
	def(&d.RetryMax, 5*time.Second)
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.Origins == nil {
		p, err := origin.New(d.AcceptOrigins, d.Logger)
		if err != nil {
			return d, fmt.Errorf("stream: AcceptOrigins: %w", err)
		}
		d.Origins = p
	}
	if d.Authenticate == nil {
		d.Authenticate = func(*http.Request) (*Identity, error) { return &Identity{}, nil }
	}
	if d.Authorize == nil {
		d.Authorize = func(*Identity, string) error { return nil }
	}
	if d.RetryMax < d.RetryMin {
		return d, errors.New("stream: RetryMax below RetryMin")
	}
	if d.HeartbeatTimeout < d.HeartbeatInterval {
		return d, errors.New("stream: HeartbeatTimeout below HeartbeatInterval")
	}
	return d, nil
}
