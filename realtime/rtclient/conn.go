// Package rtclient is the Go client of the realtime stream: Conn is one WebSocket with
// typed frames (used by tests and the load generator); Client adds what applications
// need: automatic reconnect with capped, jittered backoff honouring close codes, the
// cursor, resume, dedup by event id, and the long-polling fallback (poll.go: on close
// 4300 or a "transport" frame it polls /v2/realtime/poll with the same cursor and
// dedup, and returns to the stream when a poll answer says "stream").
package rtclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/coder/websocket"

	"encore.app/realtime/protocol"
)

// Frame is any server frame, decoded into the union of the protocol's fields.
type Frame struct {
	Type string `json:"type"`
	// events
	Events []protocol.Event `json:"events"`
	// welcome
	Version     int             `json:"version"`
	Session     string          `json:"session"`
	Instance    string          `json:"instance"`
	HeartbeatMs int64           `json:"heartbeatMs"`
	ServerTime  int64           `json:"serverTime"`
	Epoch       string          `json:"epoch"`
	Seq         uint64          `json:"seq"`
	Flags       map[string]bool `json:"flags"`
	Limits      protocol.Limits `json:"limits"`
	// subscribed
	ID       string                   `json:"id"`
	Op       string                   `json:"op"`
	Results  []protocol.ChannelResult `json:"results"`
	Recovery *protocol.Recovery       `json:"recovery"`
	// ping, pong
	TS int64 `json:"ts"`
	// transport
	Transport string `json:"transport"`
	RetryMs   int64  `json:"retryMs"`
	Reason    string `json:"reason"`
	// error
	Code    string `json:"code"`
	Message string `json:"message"`
	// presence, presence_diff, history (presence.go)
	PresenceFields
	// Size is the frame's length in bytes as received (after decompression).
	Size int `json:"-"`
}

// DialOptions configure Dial.
type DialOptions struct {
	Token       string   // sent as ?token=
	Channels    []string // subscribed in the URL (before welcome)
	Cursor      *protocol.Cursor
	Header      http.Header  // e.g. Origin, Cookie
	Compression bool         // offer permessage-deflate
	HTTPClient  *http.Client // default http.DefaultClient
	// ReadLimit bounds one server frame (default 16 MiB).
	ReadLimit int64
	// Presence subscribes Channels with "presence": true (presence_diff frames).
	Presence bool
}

// Conn is one stream connection. ReadFrame must be called by one goroutine; Send may be
// called concurrently with it. Close ends it.
type Conn struct {
	ws      *websocket.Conn
	Welcome Frame
	// CloseErr is set once ReadFrame fails.
	closeErr error
}

// Dial connects to a /v2/realtime/stream URL (ws:// or http://) and reads the welcome.
func Dial(ctx context.Context, rawURL string, o *DialOptions) (*Conn, error) {
	if o == nil {
		o = &DialOptions{}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("rtclient: url: %w", err)
	}
	switch u.Scheme {
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	}
	q := u.Query()
	if o.Token != "" {
		q.Set("token", o.Token)
	}
	if len(o.Channels) > 0 {
		q.Set("channels", strings.Join(o.Channels, ","))
		if !o.Cursor.IsZero() {
			q.Set("cursor", protocol.FormatCursor(*o.Cursor))
		}
		if o.Presence {
			q.Set("presence", "1")
		}
	}
	u.RawQuery = q.Encode()
	opts := &websocket.DialOptions{HTTPClient: o.HTTPClient, HTTPHeader: o.Header}
	if o.Compression {
		opts.CompressionMode = websocket.CompressionNoContextTakeover
	}
	ws, resp, err := websocket.Dial(ctx, u.String(), opts)
	if err != nil {
		if resp != nil {
			return nil, &HTTPError{Status: resp.StatusCode, RetryAfter: resp.Header.Get("Retry-After"), Err: err}
		}
		return nil, fmt.Errorf("rtclient: dial: %w", err)
	}
	limit := o.ReadLimit
	if limit <= 0 {
		limit = 16 << 20
	}
	ws.SetReadLimit(limit)
	c := &Conn{ws: ws}
	f, err := c.ReadFrame(ctx)
	if err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("rtclient: welcome: %w", err)
	}
	if f.Type != protocol.TypeWelcome {
		ws.CloseNow()
		return nil, fmt.Errorf("rtclient: first frame is %q, want welcome", f.Type)
	}
	c.Welcome = *f
	return c, nil
}

// HTTPError is a refused upgrade.
type HTTPError struct {
	Status     int
	RetryAfter string
	Err        error
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("rtclient: upgrade refused: HTTP %d", e.Status)
}
func (e *HTTPError) Unwrap() error { return e.Err }

// ReadFrame reads and decodes the next frame. A close from the server returns an error
// for which CloseCode reports the code.
func (c *Conn) ReadFrame(ctx context.Context) (*Frame, error) {
	typ, b, err := c.ws.Read(ctx)
	if err != nil {
		c.closeErr = err
		return nil, err
	}
	if typ != websocket.MessageText {
		return nil, errors.New("rtclient: binary frame from server")
	}
	var f Frame
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("rtclient: bad frame: %w", err)
	}
	f.Size = len(b)
	return &f, nil
}

// Send writes one client frame.
func (c *Conn) Send(ctx context.Context, f *protocol.ClientFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return err
	}
	return c.ws.Write(ctx, websocket.MessageText, b)
}

// SendRaw writes raw bytes as a text frame (for tests of malformed input).
func (c *Conn) SendRaw(ctx context.Context, b []byte) error {
	return c.ws.Write(ctx, websocket.MessageText, b)
}

// Subscribe sends a subscribe frame.
func (c *Conn) Subscribe(ctx context.Context, id string, channels []string, cur *protocol.Cursor) error {
	return c.Send(ctx, &protocol.ClientFrame{Type: protocol.TypeSubscribe, ID: id, Channels: channels, Cursor: cur})
}

// Ping sends a WebSocket ping and waits for the pong; a ReadFrame must be running
// concurrently (it reads the pong).
func (c *Conn) Ping(ctx context.Context) error { return c.ws.Ping(ctx) }

// Close closes the connection normally.
func (c *Conn) Close() error { return c.ws.Close(websocket.StatusNormalClosure, "") }

// CloseNow drops the connection without a close handshake.
func (c *Conn) CloseNow() error { return c.ws.CloseNow() }

// CloseCode returns the close code of err (from ReadFrame), or -1.
func CloseCode(err error) protocol.CloseCode {
	return protocol.CloseCode(websocket.CloseStatus(err))
}

// CloseReason returns the close reason text of err, or "".
func CloseReason(err error) string {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}
