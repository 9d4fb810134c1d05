package stream

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/time/rate"

	"encore.app/realtime/protocol"
)

// This file holds the engine's security hooks: admission (Config.Admit), refusals that
// browsers can read (close codes), the per-connection message rate, token refresh
// ("auth" frames) and token expiry.

func (e *Engine) admit(r *http.Request, id *Identity) (func(), error) {
	if e.cfg.Admit == nil {
		return nil, nil
	}
	return e.cfg.Admit(r, id, e.resuming(r))
}

// resuming reports whether a stream request resumes a session: its cursor parses and
// belongs to this stream (its epoch, and a seq not past the head). Such requests are
// admitted ahead of new sessions (Config.Admit); a made-up cursor from another stream
// or from the future does not count.
func (e *Engine) resuming(r *http.Request) bool {
	raw := r.URL.Query().Get("cursor")
	if raw == "" {
		return false
	}
	cur, err := protocol.ParseCursor(raw)
	if err != nil || cur.IsZero() || cur.Epoch != e.Epoch() {
		return false
	}
	return cur.Seq <= e.headSeq()
}

// refuseConnect answers a refused stream request. An *AuthError with a Close code is
// answered to WebSocket requests by upgrading and closing at once with that code, since
// browsers cannot read the HTTP status of a refused upgrade; everything else gets the
// HTTP status (with Retry-After for 429/503).
func (e *Engine) refuseConnect(w http.ResponseWriter, r *http.Request, err error) {
	var ae *AuthError
	if !errors.As(err, &ae) {
		ae = &AuthError{Status: http.StatusUnauthorized, Msg: "unauthorized"}
	}
	reason := ae.Reason
	if reason == "" {
		reason = RefuseAuth
	}
	e.metrics.refuse(reason)
	if ae.Close == 0 || !isWebSocketRequest(r) {
		writeAuthError(w, ae)
		return
	}
	conn, aerr := websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns: e.cfg.Origins.Patterns(), CompressionMode: websocket.CompressionDisabled,
	})
	if aerr != nil {
		return // origin refused (403) or not a valid upgrade: Accept answered
	}
	_ = conn.Close(websocket.StatusCode(ae.Close), protocol.CloseReason(ae.Msg, ae.RetryAfter.Milliseconds()))
}

func isWebSocketRequest(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// runRelease runs Config.Admit's release once. Owner goroutine only.
func (c *Client) runRelease() {
	if f := c.release; f != nil {
		c.release = nil
		f()
	}
}

// initLimits sets up the per-connection message rate (before the read loop starts).
func (c *Client) initLimits() {
	cfg := &c.e.cfg
	if cfg.ClientMessageRate > 0 {
		c.msgLimit = rate.NewLimiter(rate.Limit(cfg.ClientMessageRate), cfg.ClientMessageBurst)
	}
}

// allowMessage charges one client frame to the connection's rate. A frame over the
// rate is answered with a rate_limited error and ignored; ClientMessageBurst of them
// in a row close the connection (4102, retry hint) after what is queued for it: the
// answers to the frames it accepted (pongs, subscribe answers) go out first. Read loop
// only.
func (c *Client) allowMessage() bool {
	if c.msgLimit == nil || c.msgLimit.Allow() {
		c.msgRefused = 0
		return true
	}
	e := c.e
	e.metrics.messagesRateLimited.Add(1)
	c.msgRefused++
	if c.msgRefused >= e.cfg.ClientMessageBurst {
		c.requestClose(protocol.CloseRateLimited, "too many messages", e.retryHint(), DiscRateLimited, true)
		return false
	}
	c.enqueueCtrl(protocol.Marshal(protocol.ErrorFrame{Type: protocol.TypeError, Code: protocol.CodeRateLimited,
		Message: fmt.Sprintf("over %g frames/s: frame ignored; slow down", e.cfg.ClientMessageRate)}))
	return false
}

// handleAuth applies a token refresh: the new token must be valid (Reauthenticate) and
// name the same user. The connection then expires with the new token, and channels
// the new token no longer allows are unsubscribed (answered as an unsubscribe with
// per-channel forbidden results).
func (c *Client) handleAuth(f *protocol.ClientFrame) {
	e := c.e
	if e.cfg.Reauthenticate == nil {
		c.badFrame(f.ID, protocol.CodeBadToken, "token refresh is not enabled on this server")
		return
	}
	cur := c.id.Load()
	nid, err := e.cfg.Reauthenticate(cur, f.Token)
	if err != nil {
		c.badFrame(f.ID, protocol.CodeBadToken, err.Error())
		return
	}
	if nid == nil || nid.UserID != cur.UserID {
		c.badFrame(f.ID, protocol.CodeForbidden, "the token is for another user: reconnect with it instead")
		return
	}
	c.id.Store(nid)
	c.armExpiry(nid.ExpiresAt)
	c.recheckSubscriptions(nid, f.ID)
	var exp int64
	if !nid.ExpiresAt.IsZero() {
		exp = nid.ExpiresAt.UnixMilli()
	}
	c.enqueueCtrl(protocol.Marshal(protocol.AuthOK{Type: protocol.TypeAuth, ID: f.ID, ExpiresAt: exp}))
}

func (c *Client) recheckSubscriptions(id *Identity, reqID string) {
	e := c.e
	e.pool.mu.Lock()
	chs := make([]string, 0, len(c.subs))
	for _, s := range c.subs {
		chs = append(chs, s.ch)
	}
	e.pool.mu.Unlock()
	var refused []string
	for _, ch := range chs {
		if e.cfg.Authorize(id, ch) != nil {
			refused = append(refused, ch)
		}
	}
	if len(refused) == 0 {
		return
	}
	removed := e.pool.unsubscribe(c, refused)
	e.metrics.subscriptions.Add(-int64(len(removed)))
	res := make([]protocol.ChannelResult, 0, len(removed))
	for _, ch := range removed {
		res = append(res, protocol.ChannelResult{Channel: ch, Code: protocol.CodeForbidden, Error: "no longer allowed by the refreshed token"})
	}
	c.enqueueCtrl(protocol.Marshal(protocol.Subscribed{Type: protocol.TypeSubscribed, ID: reqID,
		Op: protocol.TypeUnsubscribe, Results: res, Epoch: e.Epoch()}))
}

// armExpiry (re)arms the close at exp (4200, "refresh the token, then reconnect"),
// unless a refresh moves the expiry first. Zero exp: no expiry.
func (c *Client) armExpiry(exp time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expiry != nil {
		c.expiry.Stop()
		c.expiry = nil
	}
	if exp.IsZero() || c.state != stateOpen {
		return
	}
	c.expiry = time.AfterFunc(time.Until(exp), func() { c.expire(exp) })
}

func (c *Client) expire(exp time.Time) {
	if cur := c.id.Load(); cur.ExpiresAt.After(exp) {
		return // refreshed meanwhile; the new timer handles it
	}
	c.requestClose(protocol.CloseTokenExpire, "token expired", 0, DiscTokenExpired, true)
}

func (c *Client) stopExpiry() {
	c.mu.Lock()
	if c.expiry != nil {
		c.expiry.Stop()
		c.expiry = nil
	}
	c.mu.Unlock()
}
