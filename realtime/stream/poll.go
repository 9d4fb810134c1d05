package stream

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"encore.app/realtime/protocol"
)

// Long-polling: GET /v2/realtime/poll is the fallback transport (docs/protocol.md
// "Long-polling"). A poll carries the same channels, cursor and credential as a stream
// subscribe and gets the same validation, authorization and recovery answers. It is
// answered at once when events after its cursor exist (from the replay window or the
// bus, at most PollMaxEvents), else it waits for the next event on its channels (a
// waiter registered with the long-poll registry, woken by dispatch without blocking),
// for a transport change, or for its timeout.
//
// Correctness of "wait": a waiter is registered BEFORE the window is scanned, and
// dispatch pushes an event into the window BEFORE it wakes the waiters of its channel.
// So an event is either seen by the scan or wakes the waiter: never neither.

// pollTail is every field of a poll answer after "events".
type pollTail struct {
	Cursor    protocol.Cursor    `json:"cursor"`
	Recovery  *protocol.Recovery `json:"recovery,omitempty"`
	Transport string             `json:"transport"`
	RetryMs   int64              `json:"retryMs"`
}

// Transport names in poll answers and transport frames.
const (
	TransportStream = protocol.TransportStream
	TransportPoll   = protocol.TransportPoll
)

// Poll refusal reasons (longPollRefusals in the metrics).
const (
	pollRefuseBadRequest = "bad_request" // 400: channels, cursor or timeout
	pollRefuseAuth       = "auth"        // Authenticate refused (401/403/429/503)
	pollRefuseForbidden  = "forbidden"   // Authorize refused a channel (403)
	pollRefuseUserLimit  = "user_limit"  // MaxPollsPerUser (429)
	pollRefuseCapacity   = "capacity"    // MaxPollWaiters (503)
	pollRefuseDraining   = "draining"    // shutting down (503)
	pollRefuseReplay     = "replay"      // no bus replay slot or the bus failed mid-way (503)
	numPollRefusals      = 7
)

var pollRefusalNames = [numPollRefusals]string{pollRefuseBadRequest, pollRefuseAuth, pollRefuseForbidden,
	pollRefuseUserLimit, pollRefuseCapacity, pollRefuseDraining, pollRefuseReplay}

// pollCounters are the long-poll figures; part of Metrics.
type pollCounters struct {
	requests   atomic.Uint64
	waiting    atomic.Int64 // gauge: polls holding a waiter
	waits      atomic.Uint64
	wakeups    atomic.Uint64
	timeouts   atomic.Uint64
	cancelled  atomic.Uint64 // client went away while waiting
	events     atomic.Uint64
	answers    atomic.Uint64
	gzipped    atomic.Uint64
	bytesRaw   atomic.Uint64 // answer bytes before gzip
	bytesSent  atomic.Uint64 // answer bytes as sent
	refusals   [numPollRefusals]atomic.Uint64
	toPoll     atomic.Uint64 // stream connections moved to long-poll by the streaming flag
	refusedUse atomic.Uint64 // stream upgrades refused with 4300 (streaming not allowed)
	toStream   atomic.Uint64 // poll answers that told the client to stream again
}

func (pc *pollCounters) refuse(reason string) {
	for i, n := range pollRefusalNames {
		if n == reason {
			pc.refusals[i].Add(1)
			return
		}
	}
}

// PollStats are the long-poll and transport-switch figures of Snapshot.
type PollStats struct {
	LongPollRequests  uint64            `json:"longPollRequests"`
	LongPollWaiting   int64             `json:"longPollWaiting"`
	LongPollWaits     uint64            `json:"longPollWaits"`
	LongPollWakeups   uint64            `json:"longPollWakeups"`
	LongPollTimeouts  uint64            `json:"longPollTimeouts"`
	LongPollCancelled uint64            `json:"longPollCancelled"`
	LongPollEvents    uint64            `json:"longPollEvents"`
	LongPollGzipped   uint64            `json:"longPollGzipped"`
	LongPollBytesRaw  uint64            `json:"longPollBytesRaw"`
	LongPollBytesSent uint64            `json:"longPollBytesSent"`
	LongPollRefusals  map[string]uint64 `json:"longPollRefusals"`
	// TransportSwitches: "to_poll" stream connections moved by the flag, "refused"
	// stream upgrades answered 4300, "to_stream" poll answers saying stream again.
	TransportSwitches map[string]uint64 `json:"transportSwitches"`
}

func (pc *pollCounters) stats() PollStats {
	s := PollStats{
		LongPollRequests:  pc.requests.Load(),
		LongPollWaiting:   pc.waiting.Load(),
		LongPollWaits:     pc.waits.Load(),
		LongPollWakeups:   pc.wakeups.Load(),
		LongPollTimeouts:  pc.timeouts.Load(),
		LongPollCancelled: pc.cancelled.Load(),
		LongPollEvents:    pc.events.Load(),
		LongPollGzipped:   pc.gzipped.Load(),
		LongPollBytesRaw:  pc.bytesRaw.Load(),
		LongPollBytesSent: pc.bytesSent.Load(),
		LongPollRefusals:  make(map[string]uint64, numPollRefusals),
		TransportSwitches: map[string]uint64{
			"to_poll": pc.toPoll.Load(), "refused": pc.refusedUse.Load(), "to_stream": pc.toStream.Load(),
		},
	}
	for i, n := range pollRefusalNames {
		s.LongPollRefusals[n] = pc.refusals[i].Load()
	}
	return s
}

// pollWaiter is one waiting poll. wake has capacity 1 and is never closed: dispatch
// and flag changes signal it without blocking; the poll's goroutine removes the waiter
// from the registry before it returns.
type pollWaiter struct {
	channels []string
	user     string
	wake     chan struct{}
}

// flagChange remembers the policy before the last change, so that a poll arriving
// just after streaming was allowed again (it was between two polls when waiting polls
// were woken) is answered "stream" at once instead of waiting for an event.
type flagChange struct {
	at   time.Time
	prev func(userID string) bool // nil: everyone was allowed
}

// recentChange is how long after a flag change a poll of a user who was not allowed
// before and is now gets "stream" without waiting.
const recentChange = 5 * time.Second

// justAllowed reports whether userID was refused streaming before the last change,
// made less than recentChange ago.
func (lp *longPoll) justAllowed(userID string) bool {
	c := lp.change.Load()
	return c != nil && c.prev != nil && time.Since(c.at) < recentChange && !c.prev(userID)
}

// longPoll is the registry of waiting polls and the streaming switch.
type longPoll struct {
	m *pollCounters

	allowed atomic.Pointer[func(userID string) bool] // nil: streaming allowed for everyone
	change  atomic.Pointer[flagChange]               // the last ApplyStreamingFlag

	mu        sync.Mutex
	byChannel map[string]map[*pollWaiter]struct{}
	all       map[*pollWaiter]struct{}
	perUser   map[string]int
	stopped   bool
	stopCh    chan struct{} // closed by stop: waiting polls answer 503; never reopened
	wg        sync.WaitGroup
	n         atomic.Int64 // len(all), read by dispatch without the lock
}

func newLongPoll(cfg *Config, m *pollCounters) *longPoll {
	lp := &longPoll{m: m, byChannel: map[string]map[*pollWaiter]struct{}{}, all: map[*pollWaiter]struct{}{},
		perUser: map[string]int{}, stopCh: make(chan struct{})}
	if cfg.StreamingAllowed != nil {
		f := cfg.StreamingAllowed
		lp.allowed.Store(&f)
	}
	return lp
}

// enter counts a running poll request; false once stopping.
func (lp *longPoll) enter() bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if lp.stopped {
		return false
	}
	lp.wg.Add(1)
	return true
}

func (lp *longPoll) exit() { lp.wg.Done() }

// stop wakes every waiting poll (they answer 503) and refuses new ones. Idempotent.
func (lp *longPoll) stop() {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if !lp.stopped {
		lp.stopped = true
		close(lp.stopCh)
	}
}

// add registers a waiter; it fails when the instance or the user is at its limit.
func (lp *longPoll) add(w *pollWaiter, maxTotal, maxPerUser int) (refusal string) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if len(lp.all) >= maxTotal {
		return pollRefuseCapacity
	}
	if w.user != "" && lp.perUser[w.user] >= maxPerUser {
		return pollRefuseUserLimit
	}
	lp.all[w] = struct{}{}
	if w.user != "" {
		lp.perUser[w.user]++
	}
	for _, ch := range w.channels {
		set := lp.byChannel[ch]
		if set == nil {
			set = map[*pollWaiter]struct{}{}
			lp.byChannel[ch] = set
		}
		set[w] = struct{}{}
	}
	lp.n.Store(int64(len(lp.all)))
	return ""
}

func (lp *longPoll) remove(w *pollWaiter) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	if _, ok := lp.all[w]; !ok {
		return
	}
	delete(lp.all, w)
	if w.user != "" {
		if lp.perUser[w.user] <= 1 {
			delete(lp.perUser, w.user)
		} else {
			lp.perUser[w.user]--
		}
	}
	for _, ch := range w.channels {
		if set := lp.byChannel[ch]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(lp.byChannel, ch)
			}
		}
	}
	lp.n.Store(int64(len(lp.all)))
}

// wakeChannel signals the waiters of channel. Called by dispatch after the event is in
// the window; never blocks (the lock is held only by map updates).
func (lp *longPoll) wakeChannel(channel string) {
	if lp.n.Load() == 0 {
		return
	}
	lp.mu.Lock()
	for w := range lp.byChannel[channel] {
		signal(w.wake)
	}
	lp.mu.Unlock()
}

// wakeAll signals every waiter (a transport change: they re-evaluate the flag).
func (lp *longPoll) wakeAll() {
	lp.mu.Lock()
	for w := range lp.all {
		signal(w.wake)
	}
	lp.mu.Unlock()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// len is the number of registered waiters (tests).
func (lp *longPoll) len() (waiters, channels, users int) {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	return len(lp.all), len(lp.byChannel), len(lp.perUser)
}

// StreamingAllowed reports whether userID may use the stream now.
func (e *Engine) StreamingAllowed(userID string) bool {
	f := e.lp.allowed.Load()
	return f == nil || (*f)(userID)
}

// ApplyStreamingFlag makes allowed the streaming policy (nil: everyone may stream) and
// applies it at once: every stream connection of a user no longer allowed gets a
// transport frame {"type":"transport","transport":"poll","retryMs":n} and is closed with
// 4300 and the same jittered retry hint ("retry=<ms>": when to probe the stream again),
// and every waiting poll re-evaluates its transport (polls of users allowed again answer
// transport "stream" within StreamReturnSpread). It returns how many connections it
// moved. allowed must be cheap and safe for concurrent use.
func (e *Engine) ApplyStreamingFlag(allowed func(userID string) bool) (moved int) {
	var prev func(string) bool
	if p := e.lp.allowed.Load(); p != nil {
		prev = *p
	}
	e.lp.change.Store(&flagChange{at: time.Now(), prev: prev})
	if allowed == nil {
		e.lp.allowed.Store(nil)
	} else {
		e.lp.allowed.Store(&allowed)
	}
	if allowed != nil {
		e.Clients(func(c *Client) {
			if allowed(c.UserID()) {
				return
			}
			hint := e.probeHint()
			c.Kick(protocol.Marshal(protocol.Transport{Type: protocol.TypeTransport, Transport: TransportPoll,
				RetryMs: hint, Reason: "streaming disabled"}), protocol.CloseUsePoll, "use long-poll", hint)
			e.metrics.poll.toPoll.Add(1)
			moved++
		})
	}
	e.lp.wakeAll()
	if moved > 0 {
		e.log.Info("streaming flag applied", "moved_to_poll", moved)
	}
	return moved
}

// refuseStream closes a just-accepted connection with 4300 when the user may not
// stream. Browsers cannot read the HTTP status of a refused upgrade, so the refusal is
// a close code after the upgrade, with no welcome.
func (e *Engine) refuseStream(c *websocket.Conn, id *Identity) bool {
	if e.StreamingAllowed(id.UserID) {
		return false
	}
	e.metrics.poll.refusedUse.Add(1)
	_ = c.Close(websocket.StatusCode(protocol.CloseUsePoll), protocol.CloseReason("streaming disabled, use long-poll", e.probeHint()))
	return true
}

// probeHint is when a client moved to long-polling should probe the stream again: a
// uniform jitter in [PollProbeInterval/2, PollProbeInterval], milliseconds.
func (e *Engine) probeHint() int64 {
	iv := e.cfg.PollProbeInterval
	return (iv/2 + time.Duration(rand.Int64N(int64(iv/2)+1))).Milliseconds()
}

// pollRequest is a parsed and checked poll.
type pollRequest struct {
	id       *Identity
	channels []string
	cursor   protocol.Cursor
	timeout  time.Duration
}

type pollFail struct {
	status int
	body   protocol.PollError
	reason string
}

// parsePoll validates the query like a stream subscribe: channel names, the
// subscription limit, Authorize per channel, the cursor, and the timeout.
func (e *Engine) parsePoll(r *http.Request, id *Identity) (*pollRequest, *pollFail) {
	q := r.URL.Query()
	bad := func(code, msg string) *pollFail {
		return &pollFail{status: http.StatusBadRequest, reason: pollRefuseBadRequest, body: protocol.PollError{Error: msg, Code: code}}
	}
	raw := q.Get("channels")
	if raw == "" {
		return nil, bad(protocol.CodeBadFrame, "channels is required (channels=a,b)")
	}
	parts := strings.Split(raw, ",")
	if len(parts) > e.cfg.MaxSubscriptions {
		return nil, bad(protocol.CodeTooManySubs, fmt.Sprintf("%d channels, limit %d", len(parts), e.cfg.MaxSubscriptions))
	}
	req := &pollRequest{id: id, timeout: e.cfg.PollTimeout}
	seen := make(map[string]struct{}, len(parts))
	var badCh, forbidden []protocol.ChannelResult
	for _, ch := range parts {
		if _, dup := seen[ch]; dup {
			continue
		}
		seen[ch] = struct{}{}
		if err := protocol.ValidateChannel(ch, e.cfg.MaxChannelLength); err != nil {
			badCh = append(badCh, protocol.ChannelResult{Channel: clipChannel(ch), Code: protocol.CodeBadChannel, Error: err.Error()})
			continue
		}
		if err := e.cfg.Authorize(id, ch); err != nil {
			forbidden = append(forbidden, protocol.ChannelResult{Channel: ch, Code: protocol.CodeForbidden, Error: err.Error()})
			continue
		}
		req.channels = append(req.channels, ch)
	}
	if len(badCh) > 0 {
		f := bad(protocol.CodeBadChannel, "bad channel name")
		f.body.Results = badCh
		return nil, f
	}
	if len(forbidden) > 0 {
		return nil, &pollFail{status: http.StatusForbidden, reason: pollRefuseForbidden,
			body: protocol.PollError{Error: "channel not allowed", Code: protocol.CodeForbidden, Results: forbidden}}
	}
	cur, err := protocol.ParseCursor(q.Get("cursor"))
	if err != nil {
		return nil, bad(protocol.CodeBadCursor, err.Error())
	}
	req.cursor = cur
	if s := q.Get("timeout"); s != "" {
		d, err := parsePollTimeout(s)
		if err != nil {
			return nil, bad(protocol.CodeBadFrame, err.Error())
		}
		req.timeout = min(d, e.cfg.MaxPollTimeout)
	}
	return req, nil
}

// parsePollTimeout reads "25" (seconds) or a Go duration ("25s", "500ms").
func parsePollTimeout(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || len(s) > 32 {
		return 0, errors.New("timeout: want seconds (25) or a duration (25s, 500ms)")
	}
	return d, nil
}

func clipChannel(ch string) string {
	if len(ch) > 200 {
		return ch[:200]
	}
	return ch
}

func (e *Engine) pollRefuse(w http.ResponseWriter, f *pollFail) {
	e.metrics.poll.refuse(f.reason)
	if f.body.RetryMs > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt((f.body.RetryMs+999)/1000, 10))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(f.status)
	_ = json.NewEncoder(w).Encode(f.body)
}

func (e *Engine) unavailable(reason, msg string) *pollFail {
	return &pollFail{status: http.StatusServiceUnavailable, reason: reason,
		body: protocol.PollError{Error: msg, Code: protocol.CodeUnavailable, RetryMs: e.retryHint()}}
}

// ServePoll handles GET /v2/realtime/poll (docs/protocol.md "Long-polling"). It runs on
// the request's goroutine, starts none, and leaves no waiter behind when it returns.
func (e *Engine) ServePoll(w http.ResponseWriter, r *http.Request) {
	pm := &e.metrics.poll
	pm.requests.Add(1)
	if e.draining.Load() {
		e.pollRefuse(w, e.unavailable(pollRefuseDraining, "draining, retry on another instance"))
		return
	}
	id, err := e.cfg.Authenticate(r)
	if err != nil {
		pm.refuse(pollRefuseAuth)
		writeAuthError(w, err)
		return
	}
	req, fail := e.parsePoll(r, id)
	if fail != nil {
		e.pollRefuse(w, fail)
		return
	}
	if !e.lp.enter() {
		e.pollRefuse(w, e.unavailable(pollRefuseDraining, "draining, retry on another instance"))
		return
	}
	defer e.lp.exit()
	ans, fail := e.poll(r.Context(), req)
	if fail != nil {
		e.pollRefuse(w, fail)
		return
	}
	if ans == nil {
		return // the client went away
	}
	e.writePoll(w, r, ans)
}

// pollAnswer is what a poll returns before encoding.
type pollAnswer struct {
	events   []*outEvent
	cursor   protocol.Cursor
	recovery *protocol.Recovery
	user     string
}

// poll computes the answer (nil when ctx ended first).
func (e *Engine) poll(ctx context.Context, req *pollRequest) (*pollAnswer, *pollFail) {
	epoch := e.Epoch()
	user := req.id.UserID
	head := e.headSeq()
	if req.cursor.IsZero() {
		// A first poll starts from now: no waiting, so the client holds a cursor
		// before any event it must not miss.
		return &pollAnswer{cursor: protocol.Cursor{Seq: head, Epoch: epoch}, user: user}, nil
	}
	notRecovered := func(rec *protocol.Recovery) *pollAnswer {
		e.metrics.recFailed.Add(1)
		return &pollAnswer{cursor: protocol.Cursor{Seq: e.headSeq(), Epoch: epoch}, recovery: rec, user: user}
	}
	if req.cursor.Epoch != epoch {
		return notRecovered(&protocol.Recovery{Reason: protocol.ReasonEpochMismatch}), nil
	}
	after := req.cursor.Seq
	if after > head {
		// Ahead of this instance: the bus may be ahead (events up to the cursor will
		// come live and are skipped by seq), or the cursor is from the future.
		if rec := e.checkCursor(ctx, &replayJob{cursor: req.cursor, checkAhead: true}); !rec.Recovered {
			return notRecovered(rec), nil
		}
	}

	wt := &pollWaiter{channels: req.channels, user: user, wake: make(chan struct{}, 1)}
	if reason := e.lp.add(wt, e.cfg.MaxPollWaiters, e.cfg.MaxPollsPerUser); reason != "" {
		if reason == pollRefuseUserLimit {
			return nil, &pollFail{status: http.StatusTooManyRequests, reason: reason,
				body: protocol.PollError{Error: "too many concurrent polls for this user", Code: protocol.CodeRateLimited, RetryMs: e.retryHint()}}
		}
		return nil, e.unavailable(reason, "too many waiting polls on this instance, retry")
	}
	defer e.lp.remove(wt)

	allowedAtStart := e.StreamingAllowed(user)
	var timer *time.Timer
	waited := false
	defer func() {
		if waited {
			e.metrics.poll.waiting.Add(-1)
		}
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		evs, upTo, needBus := e.pollCollect(req.channels, after)
		if needBus {
			var fail *pollFail
			var rec *protocol.Recovery
			evs, upTo, rec, fail = e.pollFromBus(ctx, req.channels, protocol.Cursor{Seq: after, Epoch: epoch})
			if fail != nil {
				return nil, fail
			}
			if rec != nil {
				return notRecovered(rec), nil
			}
		}
		after = max(after, upTo)
		if len(evs) > 0 || req.timeout <= 0 {
			if waited && len(evs) > 0 {
				e.metrics.poll.wakeups.Add(1)
			}
			return &pollAnswer{events: evs, cursor: protocol.Cursor{Seq: after, Epoch: epoch}, user: user}, nil
		}
		if !waited && allowedAtStart && e.lp.justAllowed(user) {
			// Streaming was allowed again while this client was between two polls.
			if !sleepCtx(ctx, e.lp.stopCh, randDuration(e.cfg.StreamReturnSpread)) {
				return nil, nil
			}
			evs, upTo, _ := e.pollCollect(req.channels, after)
			return &pollAnswer{events: evs, cursor: protocol.Cursor{Seq: max(after, upTo), Epoch: epoch}, user: user}, nil
		}
		if !waited {
			waited = true
			e.metrics.poll.waits.Add(1)
			e.metrics.poll.waiting.Add(1)
			timer = time.NewTimer(req.timeout)
		}
		select {
		case <-wt.wake:
			if !allowedAtStart && e.StreamingAllowed(user) {
				// Streaming is back: answer within a random delay so that the
				// clients of one flag change do not reconnect all at once.
				if !sleepCtx(ctx, e.lp.stopCh, randDuration(e.cfg.StreamReturnSpread)) {
					return nil, nil
				}
				evs, upTo, _ := e.pollCollect(req.channels, after)
				return &pollAnswer{events: evs, cursor: protocol.Cursor{Seq: max(after, upTo), Epoch: epoch}, user: user}, nil
			}
		case <-timer.C:
			e.metrics.poll.timeouts.Add(1)
			return &pollAnswer{cursor: protocol.Cursor{Seq: after, Epoch: epoch}, user: user}, nil
		case <-ctx.Done():
			e.metrics.poll.cancelled.Add(1)
			return nil, nil
		case <-e.lp.stopCh:
			return nil, e.unavailable(pollRefuseDraining, "server shutting down, retry")
		}
	}
}

// pollCollect scans the replay window for events after `after` on channels, at most
// PollMaxEvents. upTo is the sequence up to which the answer is complete (the head, or
// the last event when capped). needBus: the window no longer holds everything after
// `after`.
func (e *Engine) pollCollect(channels []string, after uint64) (evs []*outEvent, upTo uint64, needBus bool) {
	p := e.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	if after >= p.head {
		return nil, after, false
	}
	if after < p.floor {
		return nil, 0, true
	}
	limit := e.cfg.PollMaxEvents
	evs = p.window.since(after, func(ev *outEvent) bool {
		for _, ch := range channels {
			if ch == ev.channel {
				return true
			}
		}
		return false
	})
	if len(evs) > limit {
		evs = evs[:limit]
		return evs, evs[limit-1].seq, false
	}
	return evs, p.head, false
}

var errPollFull = errors.New("poll answer full")

// pollFromBus recovers events after cur from the bus (the window no longer holds
// them), at most PollMaxEvents, under a replay slot. rec is set when the cursor cannot
// be recovered.
func (e *Engine) pollFromBus(ctx context.Context, channels []string, cur protocol.Cursor) (evs []*outEvent, upTo uint64, rec *protocol.Recovery, fail *pollFail) {
	release, ok := e.acquireReplay(ctx)
	if !ok {
		return nil, 0, nil, e.unavailable(pollRefuseReplay, "replay busy, retry")
	}
	defer release()
	if r := e.checkCursor(ctx, &replayJob{cursor: cur}); !r.Recovered {
		return nil, 0, r, nil
	}
	head := e.headSeq()
	upTo = head
	limit := e.cfg.PollMaxEvents
	rctx, cancel := context.WithTimeout(ctx, e.cfg.ReplayTimeout)
	defer cancel()
	err := e.bus.Replay(rctx, channels, cur.Seq, head, func(ev *protocol.Event) error {
		evs = append(evs, &outEvent{seq: ev.Seq, channel: ev.Channel, enc: protocol.EncodeEvent(ev)})
		if len(evs) >= limit {
			upTo = ev.Seq
			return errPollFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errPollFull) {
		e.log.Warn("poll: replay from bus failed", "err", err)
		e.metrics.drop(DropReplayFailed, len(evs))
		return nil, 0, nil, e.unavailable(pollRefuseReplay, "replay failed, retry")
	}
	return evs, upTo, nil, nil
}

func randDuration(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(d)))
}

// sleepCtx waits d; false if ctx or stop ended first.
func sleepCtx(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}

// writePoll encodes the answer (events spliced from their shared encodings) and
// gzips it when it is at least PollGzipThreshold bytes and the client accepts gzip.
func (e *Engine) writePoll(w http.ResponseWriter, r *http.Request, a *pollAnswer) {
	pm := &e.metrics.poll
	tail := pollTail{Cursor: a.cursor, Recovery: a.recovery, Transport: TransportStream}
	if e.StreamingAllowed(a.user) {
		pm.toStream.Add(1)
	} else {
		tail.Transport, tail.RetryMs = TransportPoll, e.probeHint()
	}
	bp := framePool.Get().(*[]byte)
	b := append((*bp)[:0], `{"events":[`...)
	for i, ev := range a.events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, ev.enc...)
	}
	t, _ := json.Marshal(tail) // plain struct: cannot fail
	b = append(b, "],"...)
	b = append(b, t[1:]...)
	b = append(b, '\n')
	*bp = b
	defer func() {
		if cap(*bp) <= 1<<20 {
			framePool.Put(bp)
		}
	}()

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Add("Vary", "Accept-Encoding")
	body := b
	if th := e.cfg.PollGzipThreshold; th >= 0 && len(b) >= th && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		gz := gzipPool.Get().(*gzipBuf)
		gz.buf.Reset()
		gz.w.Reset(&gz.buf)
		_, _ = gz.w.Write(b)
		_ = gz.w.Close()
		body = gz.buf.Bytes()
		defer gzipPool.Put(gz)
		h.Set("Content-Encoding", "gzip")
		pm.gzipped.Add(1)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	pm.answers.Add(1)
	pm.events.Add(uint64(len(a.events)))
	pm.bytesRaw.Add(uint64(len(b)))
	pm.bytesSent.Add(uint64(len(body)))
}

type gzipBuf struct {
	buf bytes.Buffer
	w   *gzip.Writer
}

// gzipPool reuses compressors: a gzip.Writer holds ~800 KB of state.
var gzipPool = sync.Pool{New: func() any {
	g := &gzipBuf{}
	g.w, _ = gzip.NewWriterLevel(&g.buf, gzip.DefaultCompression)
	return g
}}

// acceptsGzip parses an Accept-Encoding header: gzip (or *) listed without q=0.
func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "gzip" && name != "*" {
			continue
		}
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		if q > 0 {
			return true
		}
	}
	return false
}

// Identify runs the Authenticate hook on r, for endpoints beside the stream that must
// see the same user (GET /v2/flags evaluates flags for the user the stream would see).
func (e *Engine) Identify(r *http.Request) (*Identity, error) { return e.cfg.Authenticate(r) }

// StopPolls answers every waiting poll with 503 and a retry hint and refuses new polls.
// Shutdown and Close call it; a server whose own shutdown waits for running handlers
// (http.Server.Shutdown) calls it first, e.g. with RegisterOnShutdown.
func (e *Engine) StopPolls() { e.lp.stop() }

// pollCollector exports PollStats to Prometheus (realtime_long_poll_*).
type pollCollector struct {
	e                                                  *Engine
	requests, waiting, waits, wakeups, timeouts, evs   *prometheus.Desc
	cancelled, bytesRaw, bytesSent, refusals, switches *prometheus.Desc
}

func newPollCollector(e *Engine) *pollCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("realtime_"+name, help, labels, nil)
	}
	return &pollCollector{e: e,
		requests:  d("long_poll_requests_total", "Long-poll requests received."),
		waiting:   d("long_poll_waiting", "Long-polls waiting for events now."),
		waits:     d("long_poll_waits_total", "Long-polls that waited for events."),
		wakeups:   d("long_poll_wakeups_total", "Waiting long-polls answered by an event."),
		timeouts:  d("long_poll_timeouts_total", "Long-polls answered empty at their timeout."),
		cancelled: d("long_poll_cancelled_total", "Long-polls whose client left while waiting."),
		evs:       d("long_poll_events_total", "Events delivered by long-polling."),
		bytesRaw:  d("long_poll_bytes_raw_total", "Long-poll answer bytes before gzip."),
		bytesSent: d("long_poll_bytes_sent_total", "Long-poll answer bytes as sent."),
		refusals:  d("long_poll_refusals_total", "Long-polls refused, by reason.", "reason"),
		switches:  d("transport_switches_total", "Transport switches by the streaming flag.", "kind"),
	}
}

func (c *pollCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.waiting, c.waits, c.wakeups, c.timeouts, c.cancelled,
		c.evs, c.bytesRaw, c.bytesSent, c.refusals, c.switches} {
		ch <- d
	}
}

func (c *pollCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.e.metrics.poll.stats()
	k := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	k(c.requests, s.LongPollRequests)
	ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(s.LongPollWaiting))
	k(c.waits, s.LongPollWaits)
	k(c.wakeups, s.LongPollWakeups)
	k(c.timeouts, s.LongPollTimeouts)
	k(c.cancelled, s.LongPollCancelled)
	k(c.evs, s.LongPollEvents)
	k(c.bytesRaw, s.LongPollBytesRaw)
	k(c.bytesSent, s.LongPollBytesSent)
	for r, v := range s.LongPollRefusals {
		k(c.refusals, v, r)
	}
	for r, v := range s.TransportSwitches {
		k(c.switches, v, r)
	}
}
