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
	"time"

	"encore.app/realtime/origin"
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
	// The origin before any work; an allowed cross-origin poll carries CORS headers on
	// every answer, refusals included, so the page can read them.
	if !e.cfg.Origins.Allow(w, r, true) {
		pm.refuse(pollRefuseOrigin)
		return
	}
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

// ServePollPreflight answers the CORS preflight of GET /v2/realtime/poll (OPTIONS):
// allowed origins get the methods and headers they ask for, others 403.
func (e *Engine) ServePollPreflight(w http.ResponseWriter, r *http.Request) {
	e.cfg.Origins.Preflight(w, r)
}

// Origins is the engine's origin policy (Config.Origins).
func (e *Engine) Origins() *origin.Policy { return e.cfg.Origins }

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

	wt := &pollWaiter{channels: req.channels, user: user, since: time.Now(), wake: make(chan struct{}, 1)}
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

var pollBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

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
	bp := pollBufPool.Get().(*[]byte)
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
			pollBufPool.Put(bp)
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
