package rtclient

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"encore.app/realtime/protocol"
)

// Config configures a Client.
type Config struct {
	URL string
	// URLs, when set, replaces URL with several interchangeable instances, tried in
	// turn (see urls.go).
	URLs     []string
	Token    string
	Channels []string
	// Cursor to resume from (zero: live from now).
	Cursor protocol.Cursor
	// OnEvent receives every event once (duplicates by id dropped), in order, on the
	// client's goroutine. It must not block for long.
	OnEvent func(ev protocol.Event)
	// OnRecovery receives every recovery answer (e.g. to resync when not recovered).
	OnRecovery func(r protocol.Recovery)
	// Backoff bounds (defaults 100ms, 5m): exponential with full jitter.
	BackoffMin, BackoffMax time.Duration
	// DedupSize bounds remembered event ids (default 10000); DedupTTL expires them
	// (default 10m).
	DedupSize int
	DedupTTL  time.Duration
	// Compression offers permessage-deflate.
	Compression bool
	Logger      *slog.Logger

	// Long-polling (poll.go): after close 4300-4399, a transport frame "poll", or a
	// refused upgrade with 4300, the client polls PollURL (default: URL with http(s)
	// and /poll instead of /stream) with the same cursor and dedup, asking the server
	// to wait PollTimeout (default 25s), until a poll answer says transport "stream"
	// or the probe hint is due; then it reconnects the stream. HTTPClient carries the
	// polls (default http.DefaultClient).
	PollURL     string
	PollTimeout time.Duration
	HTTPClient  *http.Client
}

// Stats counts what a Client did.
type Stats struct {
	Connects     uint64
	Reconnects   uint64
	Events       uint64
	Duplicates   uint64
	Recovered    uint64
	NotRecovered uint64
	LastClose    protocol.CloseCode
	// Transport is "stream" or "poll" (how events arrive now); Polls counts poll
	// requests answered 200; Switches counts moves between the two.
	Transport string
	Polls     uint64
	Switches  uint64
}

// ErrStopped is returned by Wait when the server said not to reconnect.
var ErrStopped = errors.New("rtclient: server said do not reconnect")

// Client keeps one logical subscription alive across connections. Start it with Start;
// Close stops it and waits for its goroutine.
type Client struct {
	cfg    Config
	cancel context.CancelFunc
	done   chan struct{} // closed when the run goroutine ends
	err    error         // set before done closes

	mu     sync.Mutex
	cursor protocol.Cursor
	stats  Stats
	conn   *Conn
	dedup  *Dedup
	// polling: events come by long-poll; probeAt: when to try the stream again.
	polling bool
	probeAt time.Time

	attempts int    // connection attempts, for URL rotation (run goroutine only)
	instance string // welcome.Instance of the current or last connection
}

// Start runs the client until ctx ends, Close, or a "do not reconnect" close.
func Start(ctx context.Context, cfg Config) *Client {
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = 25 * time.Second
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	c := &Client{cfg: cfg, cancel: cancel, done: make(chan struct{}), cursor: cfg.Cursor,
		dedup: NewDedup(cfg.DedupSize, cfg.DedupTTL)}
	c.stats.Transport = protocol.TransportStream
	go c.run(ctx)
	return c
}

// Close stops the client and waits for it.
func (c *Client) Close() error {
	c.cancel()
	<-c.done
	return nil
}

// Done is closed when the client stopped; Err says why.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is the reason the client stopped (nil while running or after Close).
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Cursor is the resume position: the last processed event, or the later head a server
// ping carried (docs/protocol.md "Fresh cursors on quiet channels").
func (c *Client) Cursor() protocol.Cursor {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cursor
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Drop closes the current connection abruptly (for tests of reconnects).
func (c *Client) Drop() {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		conn.CloseNow()
	}
}

func (c *Client) run(ctx context.Context) {
	defer close(c.done)
	attempt := 0
	for ctx.Err() == nil {
		var wait time.Duration
		var stop error
		connected := false
		if c.isPolling() {
			wait, stop = c.pollLoop(ctx)
		} else {
			wait, stop, connected = c.connectOnce(ctx)
			if c.isPolling() && stop == nil {
				continue // moved to long-polling: poll at once
			}
		}
		if stop != nil {
			c.err = stop
			return
		}
		if connected {
			attempt = 0
		}
		if wait <= 0 {
			attempt++
			wait = Backoff(attempt, c.cfg.BackoffMin, c.cfg.BackoffMax, rand.Float64())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Backoff is the delay before attempt n (1-based): full jitter over an exponentially
// growing ceiling min*2^(n-1), capped at max. r is a uniform random in [0,1).
func Backoff(n int, min, max time.Duration, r float64) time.Duration {
	ceil := min
	for i := 1; i < n && ceil < max; i++ {
		ceil *= 2
	}
	if ceil > max {
		ceil = max
	}
	return time.Duration(r * float64(ceil))
}

// connectOnce runs one connection. It returns the server's retry hint (0: use backoff),
// a non-nil stop error when the client must not reconnect, and whether it got a welcome.
func (c *Client) connectOnce(ctx context.Context) (wait time.Duration, stop error, connected bool) {
	c.mu.Lock()
	cur := c.cursor
	c.mu.Unlock()
	var curp *protocol.Cursor
	if !cur.IsZero() {
		curp = &cur
	}
	conn, err := Dial(ctx, c.nextURL(), &DialOptions{Token: c.cfg.Token, Channels: c.cfg.Channels, Cursor: curp,
		Compression: c.cfg.Compression})
	if err != nil {
		if code := CloseCode(err); protocol.ActionFor(code) == protocol.ActionUsePoll {
			c.usePoll(protocol.RetryHint(CloseReason(err)), code) // refused right after the upgrade
			return 0, nil, false
		}
		var he *HTTPError
		if errors.As(err, &he) {
			switch he.Status {
			case 400, 401, 403, 404:
				return 0, err, false
			}
			if s, err := strconv.Atoi(he.RetryAfter); err == nil && s > 0 {
				return time.Duration(s) * time.Second, nil, false
			}
		}
		if code := CloseCode(err); code != -1 { // refused by upgrade-then-close (docs/security.md)
			c.mu.Lock()
			c.stats.LastClose = code
			c.mu.Unlock()
			wait, stop := closeAction(code, err)
			return wait, stop, false
		}
		return 0, nil, false
	}
	c.mu.Lock()
	c.conn = conn
	c.instance = conn.Welcome.Instance
	if c.stats.Connects > 0 {
		c.stats.Reconnects++
	}
	c.stats.Connects++
	if c.cursor.IsZero() {
		// A fresh client starts at the head the server announced: a later reconnect
		// replays from there, never the whole retention.
		c.cursor = protocol.Cursor{Seq: conn.Welcome.Seq, Epoch: conn.Welcome.Epoch}
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.conn = nil
		c.mu.Unlock()
		conn.CloseNow()
	}()
	// answered: the first subscribe of this connection (the URL's, with the cursor) has
	// its answer, so a server ping's head covers every event it recovers.
	answered := false
	for {
		f, err := conn.ReadFrame(ctx)
		if err != nil {
			code := CloseCode(err)
			c.mu.Lock()
			c.stats.LastClose = code
			c.mu.Unlock()
			if ctx.Err() != nil {
				return 0, nil, true
			}
			switch protocol.ActionFor(code) {
			case protocol.ActionStop:
				if code == -1 {
					return 0, nil, true
				}
				return 0, ErrStopped, true
			case protocol.ActionUsePoll:
				c.usePoll(protocol.RetryHint(CloseReason(err)), code)
				return 0, nil, true
			case protocol.ActionRetryAfter:
				hint := time.Duration(protocol.RetryHint(CloseReason(err))) * time.Millisecond
				return hint + time.Duration(rand.Int64N(int64(hint/10)+1)), nil, true
			default:
				return 0, nil, true
			}
		}
		switch f.Type {
		case protocol.TypeEvents:
			for _, ev := range f.Events {
				c.handleEvent(ev)
			}
		case protocol.TypePing:
			_ = conn.Send(ctx, &protocol.ClientFrame{Type: protocol.TypePong, TS: f.TS})
			if answered {
				c.adoptPing(f)
			}
		case protocol.TypeSubscribed:
			if f.Op != protocol.TypeUnsubscribe {
				answered = true
			}
			if f.Recovery != nil {
				c.mu.Lock()
				if f.Recovery.Recovered {
					c.stats.Recovered++
				} else {
					c.stats.NotRecovered++
					// Live from the server's head on: continue from there in its epoch.
					c.cursor = protocol.Cursor{Seq: f.Recovery.To, Epoch: f.Epoch}
				}
				c.mu.Unlock()
				if c.cfg.OnRecovery != nil {
					c.cfg.OnRecovery(*f.Recovery)
				}
			}
		case protocol.TypeTransport:
			if f.Transport == protocol.TransportPoll {
				c.usePoll(f.RetryMs, 0) // the server closes with 4300 next; nothing follows
				return 0, nil, true
			}
		case protocol.TypeError:
			c.cfg.Logger.Warn("rtclient: server error frame", "code", f.Code, "message", f.Message)
		}
	}
}

// closeAction maps a close to the wait before the next attempt (0: backoff) or a stop.
func closeAction(code protocol.CloseCode, err error) (time.Duration, error) {
	switch protocol.ActionFor(code) {
	case protocol.ActionStop:
		return 0, ErrStopped
	case protocol.ActionRetryAfter, protocol.ActionUsePoll:
		hint := time.Duration(protocol.RetryHint(CloseReason(err))) * time.Millisecond
		return hint + time.Duration(rand.Int64N(int64(hint/10)+1)), nil
	default:
		return 0, nil
	}
}

// adoptPing moves the cursor to the head a server ping carries (docs/protocol.md "Fresh
// cursors on quiet channels"): every event of the client's channels up to it arrived
// before the ping, so a later resume from there misses nothing, even on channels that
// had no event while others went past retention. Only in the cursor's epoch, only
// forwards; pings without a head (older servers) change nothing. The caller checks that
// the connection's first subscribe was answered.
func (c *Client) adoptPing(f *Frame) {
	if f.Seq == 0 || f.Epoch == "" {
		return
	}
	c.mu.Lock()
	if f.Epoch == c.cursor.Epoch && f.Seq > c.cursor.Seq {
		c.cursor.Seq = f.Seq
	}
	c.mu.Unlock()
}

func (c *Client) handleEvent(ev protocol.Event) {
	c.mu.Lock()
	if ev.Seq > c.cursor.Seq {
		c.cursor.Seq = ev.Seq
	}
	dup := !c.dedup.Add(ev.ID, time.Now())
	if dup {
		c.stats.Duplicates++
	} else {
		c.stats.Events++
	}
	c.mu.Unlock()
	if !dup && c.cfg.OnEvent != nil {
		c.cfg.OnEvent(ev)
	}
}
