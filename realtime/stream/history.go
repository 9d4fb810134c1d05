package stream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"encore.app/realtime/protocol"
)

// Channel history (docs/protocol.md "History"): the newest events of one channel, or a
// range by seq, for a page's initial load, over a "history" frame or
// GET /v2/realtime/history. The same name rules and Authorize as a subscribe. Answered
// from the replay window when it holds the whole answer, from the bus otherwise
// (Bus.Last for the newest events before the window, Bus.Replay for a range after a
// seq), with the window's part not read again. Bus reads take a replay slot
// (MaxBusReplays, ReplayWait) and are bounded by ReplayTimeout. Every answer stops at
// the head this instance has dispatched: an answer without "before" carries that head
// as a cursor, from which a subscribe continues with no gap and no duplicate.

// Default history limits (Config.HistoryMaxEvents, HistoryMaxBytes).
const (
	DefaultHistoryLimit     = 100
	DefaultHistoryMaxEvents = 1000
	DefaultHistoryMaxBytes  = 1 << 20
)

// HistoryRequest asks for the events of one channel: the newest Limit events with
// seq < Before (0: up to the head), or with After set the oldest Limit events with
// After < seq < Before. Limit 0 is DefaultHistoryLimit (at most HistoryMaxEvents).
// Epoch, when set, must be the stream's.
type HistoryRequest struct {
	Channel       string
	Limit         int
	Before, After uint64
	Epoch         string
}

// historyAnswer is a history answer with its events already encoded.
type historyAnswer struct {
	h   protocol.History
	enc [][]byte
}

// frame is the answer as a frame with id, or (http) as the body of an HTTP answer.
func (a *historyAnswer) frame(id string, http bool) []byte {
	h := a.h
	h.ID = id
	if http {
		h.Type = ""
	}
	return protocol.AppendHistoryFrame(make([]byte, 0, 256+a.size()), &h, a.enc)
}

func (a *historyAnswer) size() int {
	n := 0
	for _, e := range a.enc {
		n += len(e) + 1
	}
	return n
}

// requestError is a refused presence or history request: its protocol code, HTTP
// status and message.
type requestError struct {
	code   string
	status int
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func refused(code string, status int, format string, args ...any) *requestError {
	return &requestError{code: code, status: status, msg: fmt.Sprintf(format, args...)}
}

// checkRead is the rule of every request about a channel: a valid name the identity
// may read (the subscribe rule).
func (e *Engine) checkRead(id *Identity, ch string) *requestError {
	if err := protocol.ValidateChannel(ch, e.cfg.MaxChannelLength); err != nil {
		return refused(protocol.CodeBadChannel, http.StatusBadRequest, "%v", err)
	}
	if err := e.cfg.Authorize(id, ch); err != nil {
		return refused(protocol.CodeForbidden, http.StatusForbidden, "%v", err)
	}
	return nil
}

// History answers req for id. Errors are *requestError.
func (e *Engine) History(ctx context.Context, id *Identity, req HistoryRequest) (*protocol.History, error) {
	a, err := e.history(ctx, id, req)
	if err != nil {
		return nil, err
	}
	h := a.h
	h.Type = ""
	return &h, nil
}

func (e *Engine) history(ctx context.Context, id *Identity, req HistoryRequest) (*historyAnswer, error) {
	if rerr := e.checkRead(id, req.Channel); rerr != nil {
		e.ext.history.WithLabelValues("refused").Inc()
		return nil, rerr
	}
	epoch := e.Epoch()
	if req.Epoch != "" && req.Epoch != epoch {
		e.ext.history.WithLabelValues("refused").Inc()
		return nil, refused(protocol.CodeBadCursor, http.StatusBadRequest, "epoch %q is not the stream's (%q): its seqs mean nothing here", req.Epoch, epoch)
	}
	if req.Before > 0 && req.After >= req.Before {
		e.ext.history.WithLabelValues("refused").Inc()
		return nil, refused(protocol.CodeBadFrame, http.StatusBadRequest, "after must be below before")
	}
	limit := req.Limit
	if limit <= 0 {
		limit = min(DefaultHistoryLimit, e.cfg.HistoryMaxEvents)
	}
	limit = min(limit, e.cfg.HistoryMaxEvents)
	match := func(ev *outEvent) bool { return ev.channel == req.Channel }

	// The window's part, under the pool lock (a copy of pointers; no I/O).
	p := e.pool
	p.mu.Lock()
	head, floor := p.head, p.floor
	upTo := head
	if req.Before > 0 {
		upTo = min(upTo, req.Before-1)
	}
	var mem []*outEvent
	forward := req.After > 0
	switch {
	case forward && req.After >= floor:
		mem = p.window.between(req.After, upTo, limit+1, match)
	case !forward:
		mem = p.window.newest(upTo, limit+1, match)
	}
	p.mu.Unlock()

	a := &historyAnswer{h: protocol.History{Type: protocol.TypeHistory, Channel: req.Channel, Epoch: epoch, Source: "memory"}}
	var evs []*outEvent
	var fromBus int
	switch {
	case forward && req.After >= floor, !forward && (len(mem) > limit || floor == 0):
		// The window holds the whole answer (floor 0: it holds everything ever dispatched).
		evs = mem
	case forward:
		got, err := e.historyBus(ctx, func(ctx context.Context, fn func(*protocol.Event) error) error {
			return e.bus.Replay(ctx, []string{req.Channel}, req.After, upTo, fn)
		}, limit+1)
		if err != nil {
			return nil, err
		}
		evs, fromBus = got, len(got)
	default:
		// Newest first: what the window holds (seq > floor), completed by the newest
		// events of the channel at or below the floor from the bus.
		var got []*outEvent
		if need := limit + 1 - len(mem); upTo > 0 && min(floor, upTo) > 0 {
			var err error
			got, err = e.historyBus(ctx, func(ctx context.Context, fn func(*protocol.Event) error) error {
				return e.bus.Last(ctx, req.Channel, min(floor, upTo), need, fn)
			}, need)
			if err != nil {
				return nil, err
			}
		}
		evs, fromBus = append(got, mem...), len(got)
	}
	switch {
	case fromBus > 0 && fromBus < len(evs):
		a.h.Source = "mixed"
	case fromBus > 0:
		a.h.Source = "bus"
	}
	// Cut to the limit and the byte bound: newest-first answers keep the newest,
	// forward answers the oldest. One event is always kept (an event is at most
	// MaxEventData, below the byte bound), so paging always moves.
	budget := e.cfg.HistoryMaxBytes - 256 - len(req.Channel)
	if forward {
		n, size := 0, 0
		for n < len(evs) && n < limit && (n == 0 || size+len(evs[n].enc)+1 <= budget) {
			size += len(evs[n].enc) + 1
			n++
		}
		a.h.More = n < len(evs)
		evs = evs[:n]
	} else {
		n, size := 0, 0
		for n < len(evs) && n < limit && (n == 0 || size+len(evs[len(evs)-1-n].enc)+1 <= budget) {
			size += len(evs[len(evs)-1-n].enc) + 1
			n++
		}
		a.h.More = n < len(evs)
		evs = evs[len(evs)-n:]
	}
	if req.Before == 0 && (!forward || !a.h.More) {
		a.h.Cursor = &protocol.Cursor{Seq: head, Epoch: epoch}
	}
	a.enc = make([][]byte, len(evs))
	for i, ev := range evs {
		a.enc[i] = ev.enc
	}
	e.ext.history.WithLabelValues(a.h.Source).Inc()
	return a, nil
}

// errHistoryFull stops a bus read once it has what the answer needs.
var errHistoryFull = errors.New("history: enough events")

// historyBus runs read (a Replay or a Last) with a replay slot and ReplayTimeout,
// collecting at most max events.
func (e *Engine) historyBus(ctx context.Context, read func(context.Context, func(*protocol.Event) error) error, max int) ([]*outEvent, error) {
	release, ok := e.acquireReplay(ctx)
	if !ok {
		e.ext.history.WithLabelValues("unavailable").Inc()
		return nil, refused(protocol.CodeUnavailable, http.StatusServiceUnavailable, "the bus is busy: retry later")
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ReplayTimeout)
	defer cancel()
	var out []*outEvent
	err := read(ctx, func(ev *protocol.Event) error {
		out = append(out, &outEvent{seq: ev.Seq, channel: ev.Channel, enc: protocol.EncodeEvent(ev)})
		if len(out) >= max {
			return errHistoryFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errHistoryFull) {
		e.ext.history.WithLabelValues("unavailable").Inc()
		if errors.Is(err, protocol.ErrBadChannel) {
			return nil, refused(protocol.CodeBadChannel, http.StatusBadRequest, "%v", err)
		}
		e.log.Warn("history: bus read failed", "err", err)
		return nil, refused(protocol.CodeUnavailable, http.StatusServiceUnavailable, "the bus could not be read: retry later")
	}
	return out, nil
}

// newest returns the newest n events with seq <= upTo that match keep, oldest first.
func (r *ring) newest(upTo uint64, n int, keep func(*outEvent) bool) []*outEvent {
	var out []*outEvent
	for j := r.n - 1; j >= 0 && len(out) < n; j-- {
		if e := r.at(j); e.seq <= upTo && keep(e) {
			out = append(out, e)
		}
	}
	for i, k := 0, len(out)-1; i < k; i, k = i+1, k-1 {
		out[i], out[k] = out[k], out[i]
	}
	return out
}

// between returns the oldest n events with after < seq <= upTo that match keep.
func (r *ring) between(after, upTo uint64, n int, keep func(*outEvent) bool) []*outEvent {
	var out []*outEvent
	for _, e := range r.since(after, keep) {
		if e.seq > upTo || len(out) >= n {
			break
		}
		out = append(out, e)
	}
	return out
}

// handleHistory answers a history frame. The window's part is read at once; a bus
// read runs on a goroutine of the engine (at most maxInflight per connection) so that the
// read loop goes on.
func (c *Client) handleHistory(f *protocol.ClientFrame) {
	e := c.e
	req := HistoryRequest{Channel: f.Channel, Limit: f.Limit, Before: f.Before, After: f.After, Epoch: f.Epoch}
	if !e.ext.begin(c) {
		c.requestFailed(f.ID, refused(protocol.CodeRateLimited, http.StatusTooManyRequests, "at most %d history or presence requests at a time per connection", maxInflight))
		return
	}
	id := c.id.Load()
	e.ext.run(func() {
		defer e.ext.end(c)
		a, err := e.history(e.ctx, id, req) // bounded by the bus call timeout and the in-flight cap
		if err != nil {
			c.requestFailed(f.ID, err)
			return
		}
		c.enqueueCtrl(a.frame(f.ID, false))
	})
}

// requestFailed answers a refused presence or history request with an error frame.
// A refusal is not a protocol violation: it is not counted as a bad frame.
func (c *Client) requestFailed(id string, err error) {
	var re *requestError
	if !errors.As(err, &re) {
		re = refused(protocol.CodeInternal, http.StatusInternalServerError, "internal error")
	}
	c.enqueueCtrl(protocol.Marshal(protocol.ErrorFrame{Type: protocol.TypeError, ID: id, Code: re.code, Message: re.msg}))
}

// ServeHistory handles GET /v2/realtime/history?channel=&limit=&before=&after=&epoch=
// with the credential of the stream (token or cookie).
func (e *Engine) ServeHistory(w http.ResponseWriter, r *http.Request) {
	id, ok := e.requestIdentity(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	req := HistoryRequest{Channel: q.Get("channel"), Epoch: q.Get("epoch")}
	for _, p := range []struct {
		name string
		dst  *uint64
	}{{"before", &req.Before}, {"after", &req.After}} {
		if s := q.Get(p.name); s != "" {
			v, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				writeRequestError(w, refused(protocol.CodeBadFrame, http.StatusBadRequest, "%s: not a sequence number", p.name))
				return
			}
			*p.dst = v
		}
	}
	if s := q.Get("limit"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			writeRequestError(w, refused(protocol.CodeBadFrame, http.StatusBadRequest, "limit: a number from 0"))
			return
		}
		req.Limit = v
	}
	if req.Channel == "" {
		writeRequestError(w, refused(protocol.CodeBadFrame, http.StatusBadRequest, "channel is required"))
		return
	}
	a, err := e.history(r.Context(), id, req)
	if err != nil {
		writeRequestError(w, err)
		return
	}
	writeJSONBody(w, a.frame("", true))
}

// requestIdentity checks the origin of a presence or history request and authenticates
// it, like a poll; it answers the refusal itself.
func (e *Engine) requestIdentity(w http.ResponseWriter, r *http.Request) (*Identity, bool) {
	// The origin before any work, as for a poll; an allowed cross-origin request carries
	// CORS headers on every answer, refusals included, so the page can read them.
	if !e.cfg.Origins.Allow(w, r, true) {
		return nil, false
	}
	if e.draining.Load() {
		w.Header().Set("Retry-After", strconv.FormatInt((e.retryHint()+999)/1000, 10))
		writeRequestError(w, refused(protocol.CodeUnavailable, http.StatusServiceUnavailable, "draining, retry on another instance"))
		return nil, false
	}
	id, err := e.cfg.Authenticate(r)
	if err != nil {
		writeAuthError(w, err)
		return nil, false
	}
	return id, true
}

// writeRequestError answers a refused request as {"error","code"} with its status
// (Retry-After on 503).
func writeRequestError(w http.ResponseWriter, err error) {
	var re *requestError
	if !errors.As(err, &re) {
		re = refused(protocol.CodeInternal, http.StatusInternalServerError, "internal error")
	}
	if re.status == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", "1")
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(re.status)
	_, _ = w.Write(protocol.Marshal(protocol.PollError{Error: re.msg, Code: re.code}))
}

func writeJSONBody(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b)
}
