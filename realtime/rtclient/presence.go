package rtclient

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"encore.app/realtime/protocol"
)

// PresenceFields are the fields of presence, presence_diff and history frames
// (docs/protocol.md "Presence", "History"), embedded in Frame.
type PresenceFields struct {
	Channel string `json:"channel"`
	// presence
	Members     []protocol.Member `json:"members"`
	Users       int               `json:"users"`
	Conns       int               `json:"conns"`
	Anonymous   int               `json:"anonymous"`
	Truncated   bool              `json:"truncated"`
	Approximate bool              `json:"approximate"`
	// presence_diff
	Joins  []string `json:"joins"`
	Leaves []string `json:"leaves"`
	// history (and Events, Epoch)
	More   bool             `json:"more"`
	Cursor *protocol.Cursor `json:"cursor"`
	Source string           `json:"source"`
}

// SubscribePresence sends a subscribe that also asks for presence_diff frames of
// channels.
func (c *Conn) SubscribePresence(ctx context.Context, id string, channels []string, cur *protocol.Cursor) error {
	return c.Send(ctx, &protocol.ClientFrame{Type: protocol.TypeSubscribe, ID: id, Channels: channels, Cursor: cur,
		RequestFields: protocol.RequestFields{Presence: true}})
}

// RequestPresence sends a presence request; the answer is a presence frame with the
// same id (or an error frame with it).
func (c *Conn) RequestPresence(ctx context.Context, id, channel string, limit int) error {
	return c.Send(ctx, &protocol.ClientFrame{Type: protocol.TypePresence, ID: id,
		RequestFields: protocol.RequestFields{Channel: channel, Limit: limit}})
}

// RequestHistory sends a history request; the answer is a history frame with the same
// id (or an error frame with it).
func (c *Conn) RequestHistory(ctx context.Context, id string, req protocol.RequestFields) error {
	return c.Send(ctx, &protocol.ClientFrame{Type: protocol.TypeHistory, ID: id, RequestFields: req})
}

// siblingURL derives the URL of another endpoint from a stream URL: ws->http,
// wss->https, the last path element "stream" -> name, and the query dropped.
func siblingURL(streamURL, name string) (*url.URL, error) {
	s, err := PollURL(streamURL)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("rtclient: url: %w", err)
	}
	if p, ok := strings.CutSuffix(u.Path, "/poll"); ok {
		u.Path = p + "/" + name
	}
	u.RawQuery = ""
	return u, nil
}

// RequestError is a refused presence or history request (HTTP status and the
// protocol's code).
type RequestError struct {
	Status  int
	Code    string
	Message string
}

func (e *RequestError) Error() string {
	return fmt.Sprintf("rtclient: %d %s: %s", e.Status, e.Code, e.Message)
}

// HistoryOptions select the events of History: the newest Limit (0: the server's
// default, 100) before Before (0: up to the head), or with After the oldest Limit after
// it. Epoch, when set, must be the stream's.
type HistoryOptions struct {
	Limit         int
	Before, After uint64
	Epoch         string
}

// History asks GET /v2/realtime/history of the instance the client uses (the token
// of the client) for events of channel, in seq order (docs/protocol.md "History").
// A refusal is a *RequestError.
func (c *Client) History(ctx context.Context, channel string, o HistoryOptions) (*protocol.History, error) {
	q := url.Values{"channel": {channel}}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Before > 0 {
		q.Set("before", strconv.FormatUint(o.Before, 10))
	}
	if o.After > 0 {
		q.Set("after", strconv.FormatUint(o.After, 10))
	}
	if o.Epoch != "" {
		q.Set("epoch", o.Epoch)
	}
	var h protocol.History
	if err := c.getJSON(ctx, "history", q, &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// Presence asks GET /v2/realtime/presence for channel's members (at most limit listed;
// 0: the server's default). A refusal is a *RequestError.
func (c *Client) Presence(ctx context.Context, channel string, limit int) (*protocol.PresenceSnapshot, error) {
	q := url.Values{"channel": {channel}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var s protocol.PresenceSnapshot
	if err := c.getJSON(ctx, "presence", q, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func (c *Client) getJSON(ctx context.Context, endpoint string, q url.Values, dst any) error {
	c.mu.Lock()
	base := c.lastStreamURL
	c.mu.Unlock()
	if base == "" {
		base = c.urls()[0]
	}
	u, err := siblingURL(base, endpoint)
	if err != nil {
		return err
	}
	if c.cfg.Token != "" {
		q.Set("token", c.cfg.Token)
	}
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("rtclient: %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("rtclient: %s: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		var pe protocol.PollError
		_ = json.Unmarshal(body, &pe)
		return &RequestError{Status: resp.StatusCode, Code: pe.Code, Message: pe.Error}
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fmt.Errorf("rtclient: %s: %w", endpoint, err)
	}
	return nil
}
