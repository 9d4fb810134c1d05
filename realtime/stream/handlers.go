package stream

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
)

// ServeStream upgrades to the event stream and runs the connection until it ends. The
// caller's goroutine is the connection's owner and reader.
func (e *Engine) ServeStream(w http.ResponseWriter, r *http.Request) {
	// The origin first: a cross-site page carrying the user's cookie spends nothing
	// (no token check, no per-IP or per-user budget, no admission).
	if !e.cfg.Origins.Allow(w, r, false) {
		e.metrics.refuse(RefuseOrigin)
		return
	}
	if e.draining.Load() {
		e.metrics.refuse(RefuseDraining)
		w.Header().Set("Retry-After", strconv.FormatInt((e.retryHint()+999)/1000, 10))
		http.Error(w, "draining, retry on another instance", http.StatusServiceUnavailable)
		return
	}
	id, err := e.cfg.Authenticate(r)
	if err != nil {
		e.refuseConnect(w, r, err)
		return
	}
	release, err := e.admit(r, id)
	if err != nil {
		e.refuseConnect(w, r, err)
		return
	}
	admitted := false
	defer func() {
		if !admitted && release != nil {
			release()
		}
	}()
	q := r.URL.Query()
	var first *protocol.ClientFrame
	if chs := q.Get("channels"); chs != "" {
		cur, err := protocol.ParseCursor(q.Get("cursor"))
		if err != nil {
			e.metrics.refuse(RefuseUpgrade)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		first = &protocol.ClientFrame{Type: protocol.TypeSubscribe, Channels: strings.Split(chs, ",")}
		for i, ch := range first.Channels {
			first.Channels[i] = strings.Clone(ch) // not a piece of the request line, kept for the connection's life
		}
		first.Presence = q.Get("presence") == "1" // presence.go
		if !cur.IsZero() {
			first.Cursor = &cur
		}
		if len(first.Channels) > e.cfg.MaxSubscriptions {
			e.metrics.refuse(RefuseUpgrade)
			http.Error(w, "too many channels", http.StatusBadRequest)
			return
		}
	}
	opts := &websocket.AcceptOptions{
		OriginPatterns:       e.cfg.Origins.Patterns(), // checked above; the library's check agrees
		CompressionMode:      websocket.CompressionNoContextTakeover,
		CompressionThreshold: e.cfg.CompressionThreshold,
	}
	if e.cfg.CompressionThreshold < 0 {
		opts.CompressionMode = websocket.CompressionDisabled
	}
	cw := &countingWriter{ResponseWriter: w, m: e.metrics, timeout: e.cfg.WriteTimeout, sndbuf: e.cfg.SendBuffer}
	conn, err := websocket.Accept(cw, r, opts)
	if err != nil {
		e.metrics.refuse(RefuseUpgrade)
		e.log.Debug("upgrade refused", "err", err)
		return
	}
	conn.SetReadLimit(e.cfg.MaxFrameBytes)
	if e.refuseStream(conn, id) { // streaming flag off for this user: close 4300 (switch.go)
		return
	}
	c := &Client{
		e: e, conn: conn, cc: cw.s, session: newSessionID(),
		deflate: strings.Contains(cw.Header().Get("Sec-WebSocket-Extensions"), "permessage-deflate"),
		opened:  time.Now(),
	}
	if !c.deflate { // the compressing ones share phase 0, and so their compressed frames
		c.phase = uint8(e.phaseSeq.Add(1) % fanPhases)
	}
	c.idle.L = &c.mu
	c.id.Store(id)
	c.release, admitted = release, true
	c.initLimits()
	c.lastRead.Store(c.e.cfg.now().UnixNano())
	c.cc.attach(c) // from here on, every write goes through the writer
	// The welcome is queued before the client is registered, so that it is the first
	// frame (the sweeper's pings reach registered clients only).
	c.enqueueCtrl(protocol.Marshal(protocol.Welcome{
		Type: protocol.TypeWelcome, Version: protocol.Version, Session: c.session, Instance: e.cfg.Instance,
		HeartbeatMs: e.cfg.HeartbeatInterval.Milliseconds(), ServerTime: time.Now().UnixMilli(),
		Epoch: e.Epoch(), Seq: e.headSeq(), Flags: e.welcomeFlags(id),
		Limits: protocol.Limits{MaxFrameBytes: e.cfg.MaxFrameBytes, MaxSubscriptions: e.cfg.MaxSubscriptions,
			MaxChannelLength: e.cfg.MaxChannelLength, MaxBatchEvents: e.cfg.BatchMaxEvents},
	}))
	if !e.register(c) {
		c.runRelease()
		e.metrics.refuse(RefuseDraining)
		c.requestClose(protocol.CloseShutdown, "server shutting down", e.retryHint(), DiscShutdown, false)
		c.waitWriterIdle(closeGrace, c.abort)
		_ = conn.CloseNow()
		return
	}
	c.armExpiry(id.ExpiresAt)
	// The policy may have changed since refuseStream looked, before ApplyStreamingFlag
	// could see this connection: look again now that it is registered.
	moved := !e.StreamingAllowed(id.UserID) && e.moveToPoll(c)
	if first != nil && !moved {
		c.handleSubscribe(first)
	}
	c.welcomed.Store(true) // the sweeper pings only after the welcome (engine.go sweep)
	// The connection runs on its own goroutine (tracked by e.conns, which register
	// added to) so that this handler returns and net/http releases the request, its
	// headers and the handler's deep stack: memory an idle connection would otherwise
	// hold for its whole life.
	// While the client sends nothing, the reader parks without a goroutine (reader.go).
	go c.serveReads()
}

func (e *Engine) headSeq() uint64 {
	e.pool.mu.Lock()
	defer e.pool.mu.Unlock()
	return e.pool.head
}

func writeAuthError(w http.ResponseWriter, err error) {
	var ae *AuthError
	if !errors.As(err, &ae) {
		ae = &AuthError{Status: http.StatusUnauthorized, Msg: "unauthorized"}
	}
	if ae.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((ae.RetryAfter+time.Second-1)/time.Second), 10))
	}
	writeJSONError(w, ae.Status, ae.Msg)
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// readLoop reads client frames until the connection ends, and returns why it ended, or
// until it parked the reader (parked true: reader.go).
func (c *Client) readLoop() (why DisconnectReason, parked bool) {
	for {
		// Between messages: park when nothing is there to read, or (where the reader
		// cannot park) wait for the socket on a shallow stack.
		if !c.cc.readyNow() {
			if c.parkReader() {
				return 0, true
			}
			c.cc.waitReadable()
		}
		// No context: a context per read costs a registration with it for as long as
		// the read waits. Closing the socket ends the read.
		typ, data, err := c.conn.Read(context.Background())
		if err != nil {
			switch {
			case errors.Is(err, websocket.ErrMessageTooBig):
				return DiscFrameTooBig, false
			case websocket.CloseStatus(err) != -1:
				return DiscClientClosed, false
			default:
				return DiscReadError, false
			}
		}
		c.lastRead.Store(c.e.cfg.now().UnixNano())
		if c.failed || !c.allowMessage() {
			continue
		}
		if typ != websocket.MessageText {
			c.badFrame("", protocol.CodeBadFrame, "binary frames are not part of the protocol")
			continue
		}
		if !utf8.Valid(data) {
			// RFC 6455 section 8.1: a text frame that is not UTF-8 fails the connection
			// with 1007 (the WebSocket library does not check).
			c.e.metrics.badFrames.Add(1)
			c.requestClose(protocol.CloseBadData, "text frame is not valid UTF-8", 0, DiscProtocol, false)
			c.failed = true
			continue
		}
		f, err := protocol.DecodeClientFrame(data, max(c.e.cfg.MaxSubscriptions, 100))
		if err != nil {
			id := ""
			if f != nil {
				id = f.ID
			}
			code := protocol.CodeBadFrame
			if f != nil && f.Type != "" && !knownType(f.Type) {
				code = protocol.CodeUnknownType
			} else if errors.Is(err, protocol.ErrBadCursor) {
				code = protocol.CodeBadCursor
			}
			c.badFrame(id, code, err.Error())
			continue
		}
		switch f.Type {
		case protocol.TypeSubscribe:
			c.handleSubscribe(f)
		case protocol.TypeUnsubscribe:
			c.handleUnsubscribe(f)
		case protocol.TypePing:
			c.enqueueCtrl(protocol.Marshal(protocol.Pong{Type: protocol.TypePong, TS: f.TS, ServerTime: time.Now().UnixMilli()}))
		case protocol.TypePong:
		case protocol.TypeHealth:
			c.e.metrics.healthReports.Add(1)
			c.noteHealth(f.Health)
			if h := c.e.cfg.OnHealth; h != nil {
				h(c, f.Health)
			}
		case protocol.TypeAuth:
			c.handleAuth(f)
		case protocol.TypeHistory:
			c.handleHistory(f)
		case protocol.TypePresence:
			c.handlePresence(f)
		}
	}
}

func knownType(t string) bool {
	switch t {
	case protocol.TypeSubscribe, protocol.TypeUnsubscribe, protocol.TypePing, protocol.TypePong,
		protocol.TypeHealth, protocol.TypeAuth, protocol.TypeHistory, protocol.TypePresence:
		return true
	}
	return false
}

func (c *Client) badFrame(id, code, msg string) {
	c.e.metrics.badFrames.Add(1)
	c.badFrames++
	c.enqueueCtrl(protocol.Marshal(protocol.ErrorFrame{Type: protocol.TypeError, ID: id, Code: code, Message: msg}))
	if c.badFrames >= c.e.cfg.MaxBadFrames {
		c.requestClose(protocol.CloseBadRequest, "too many bad frames", 0, DiscProtocol, true)
	}
}

func (c *Client) handleSubscribe(f *protocol.ClientFrame) {
	e := c.e
	var ok []string
	var refused []protocol.ChannelResult
	seen := make(map[string]struct{}, len(f.Channels))
	for _, ch := range f.Channels {
		if _, dup := seen[ch]; dup {
			continue
		}
		seen[ch] = struct{}{}
		if err := protocol.ValidateChannel(ch, e.cfg.MaxChannelLength); err != nil {
			refused = append(refused, protocol.ChannelResult{Channel: ch, Code: protocol.CodeBadChannel, Error: err.Error()})
			continue
		}
		if err := e.cfg.Authorize(c.id.Load(), ch); err != nil {
			refused = append(refused, protocol.ChannelResult{Channel: ch, Code: protocol.CodeForbidden, Error: err.Error()})
			continue
		}
		ok = append(ok, ch)
	}
	added := e.pool.subscribe(c, ok, f.Cursor, e.Epoch(), e.cfg.MaxSubscriptions, func(job *replayJob) {
		job.reqID = f.ID
		job.results = append(job.results, refused...)
		c.enqueue(item{job: job})
	})
	e.metrics.subscriptions.Add(int64(len(added)))
	c.presenceSubscribed(f, ok, added)
}

func (c *Client) handleUnsubscribe(f *protocol.ClientFrame) {
	removed := c.e.pool.unsubscribe(c, f.Channels)
	c.e.metrics.subscriptions.Add(-int64(len(removed)))
	c.presenceUnsubscribed(removed)
	gone := make(map[string]bool, len(removed))
	for _, ch := range removed {
		gone[ch] = true
	}
	res := make([]protocol.ChannelResult, 0, len(f.Channels))
	for _, ch := range f.Channels {
		if gone[ch] {
			res = append(res, protocol.ChannelResult{Channel: ch, OK: true})
		} else {
			res = append(res, protocol.ChannelResult{Channel: ch, Code: protocol.CodeNotSubscribed, Error: "not subscribed"})
		}
	}
	c.enqueueCtrl(protocol.Marshal(protocol.Subscribed{Type: protocol.TypeSubscribed, ID: f.ID,
		Op: protocol.TypeUnsubscribe, Results: res, Epoch: c.e.Epoch()}))
}

// teardown runs on the owner goroutine after the read loop ended: stop fan-out to c,
// let the writer finish what it must still send (the answer to a close), release
// everything, count.
func (c *Client) teardown(why DisconnectReason) {
	e := c.e
	c.presenceTeardown()
	n := e.pool.removeAll(c)
	e.metrics.subscriptions.Add(-int64(n))
	c.mu.Lock()
	c.setDiscLocked(why)
	if c.state != stateClosed {
		c.state = stateClosed // nothing more is queued or sent but the library's answer
		c.resetQueueLocked(DropClosing)
	}
	c.mu.Unlock()
	// Cut the socket now when nothing more can be written usefully (it broke, or the
	// engine is closing). Otherwise the writer gets closeGrace to send what it holds
	// (the library's close frame).
	if why == DiscReadError || e.ctx.Err() != nil {
		c.abort()
	}
	c.waitWriterIdle(closeGrace, c.abort)
	_ = c.conn.CloseNow()
	c.mu.Lock()
	reason := c.disc
	c.mu.Unlock()
	e.metrics.disconnects[reason].Add(1)
	c.stopExpiry()
	c.runRelease()
	e.unregister(c)
}

// publishRequest is one event or a batch.
type publishRequest struct {
	protocol.Event
	Events []protocol.Event `json:"events"`
}

// PublishResponse answers a publish.
type PublishResponse struct {
	Acks []bus.Ack `json:"acks"`
}

// ServePublish handles POST /v2/realtime/publish.
func (e *Engine) ServePublish(w http.ResponseWriter, r *http.Request) {
	if !e.publisherAllowed(r) {
		writeJSONError(w, http.StatusUnauthorized, "publisher key required (Authorization: Bearer <key> or X-Publisher-Key: <key>)")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, e.cfg.MaxPublishBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeJSONError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", e.cfg.MaxPublishBytes))
			return
		}
		writeJSONError(w, http.StatusBadRequest, "reading body failed")
		return
	}
	evs, err := e.DecodePublish(body)
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, errTooManyEvents) {
			status = http.StatusRequestEntityTooLarge
		}
		writeJSONError(w, status, err.Error())
		return
	}
	acks, err := e.Publish(r.Context(), evs)
	if err != nil {
		if errors.Is(err, bus.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
			w.Header().Set("Retry-After", "1")
			writeJSONError(w, http.StatusServiceUnavailable, "bus unavailable, retry")
			return
		}
		e.log.Error("publish", "err", err)
		writeJSONError(w, http.StatusInternalServerError, "publish failed")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(PublishResponse{Acks: acks})
}

var errTooManyEvents = errors.New("too many events")

// DecodePublish parses and validates a publish body (one event or {"events":[...]}).
// Nothing of a batch is accepted when one event is bad; the error names its index.
func (e *Engine) DecodePublish(body []byte) ([]*protocol.Event, error) {
	var req publishRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		e.metrics.refusePublish(RefusePublishInvalid)
		return nil, fmt.Errorf("bad JSON: %v", err)
	}
	if dec.More() {
		e.metrics.refusePublish(RefusePublishInvalid)
		return nil, errors.New("bad JSON: trailing data after the object")
	}
	var evs []*protocol.Event
	if req.Events != nil {
		if req.Channel != "" || len(req.Events) == 0 {
			e.metrics.refusePublish(RefusePublishInvalid)
		}
		if req.Channel != "" {
			return nil, errors.New("give either one event or \"events\", not both")
		}
		if len(req.Events) == 0 {
			return nil, errors.New("\"events\" is empty")
		}
		for i := range req.Events {
			evs = append(evs, &req.Events[i])
		}
	} else {
		evs = []*protocol.Event{&req.Event}
	}
	if err := e.ValidateEvents(evs); err != nil {
		return nil, err
	}
	return evs, nil
}

// ValidateEvents checks events about to be published, however they arrived (HTTP
// publish, the Encore topic): batch size, channel name, data size, then
// Config.CheckEvent (typed payloads) when set. It clears Seq and TS (the bus sets
// them). The error of a bad event names its index; errTooManyEvents marks a batch over
// MaxPublishEvents. Every refusal is counted by reason (Snapshot.PublishRefusals).
func (e *Engine) ValidateEvents(evs []*protocol.Event) error {
	if len(evs) > e.cfg.MaxPublishEvents {
		e.metrics.refusePublish(RefusePublishTooMany)
		return fmt.Errorf("%w: %d events, limit %d", errTooManyEvents, len(evs), e.cfg.MaxPublishEvents)
	}
	for i, ev := range evs {
		ev.Seq, ev.TS = 0, 0
		if err := protocol.ValidateEvent(ev, e.cfg.MaxChannelLength, e.cfg.MaxEventData); err != nil {
			e.metrics.refusePublish(RefusePublishInvalid)
			return fmt.Errorf("event %d: %w", i, err)
		}
	}
	if e.cfg.CheckEvent != nil {
		for i, ev := range evs {
			if err := e.cfg.CheckEvent(ev); err != nil {
				e.metrics.refusePublish(RefusePublishPayload)
				return fmt.Errorf("event %d: %w", i, err)
			}
		}
	}
	return nil
}

// Publish appends validated events to the bus and counts them.
func (e *Engine) Publish(ctx context.Context, evs []*protocol.Event) ([]bus.Ack, error) {
	start := time.Now()
	acks, err := e.bus.Publish(ctx, evs)
	if err != nil {
		return nil, err
	}
	e.metrics.publishLatency.Observe(time.Since(start).Seconds())
	for _, a := range acks {
		if a.Duplicate {
			e.metrics.eventsDuplicate.Add(1)
		} else {
			e.metrics.eventsPublished.Add(1)
		}
	}
	return acks, nil
}

func (e *Engine) publisherAllowed(r *http.Request) bool {
	if e.cfg.PublisherKey == "" {
		return e.cfg.AllowAnonymousPublish
	}
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		key = r.Header.Get("X-Publisher-Key")
	}
	return subtle.ConstantTimeCompare([]byte(key), []byte(e.cfg.PublisherKey)) == 1
}

// ServeMetrics handles GET /v2/realtime/metrics.
func (e *Engine) ServeMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(e.Snapshot())
}
