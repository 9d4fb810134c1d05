package rtclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"encore.app/realtime/protocol"
)

// maxPollBody bounds one poll answer read by the client (after gzip decoding).
const maxPollBody = 64 << 20

// Transport is how events arrive now: "stream" or "poll".
func (c *Client) Transport() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats.Transport
}

func (c *Client) isPolling() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.polling
}

// usePoll switches to long-polling; the stream is probed again after probeMs (0: only
// when a poll answer says "stream").
func (c *Client) usePoll(probeMs int64, code protocol.CloseCode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if code != 0 {
		c.stats.LastClose = code
	}
	if !c.polling {
		c.polling = true
		c.stats.Transport = protocol.TransportPoll
		c.stats.Switches++
	}
	c.probeAt = time.Time{}
	if probeMs > 0 {
		c.probeAt = time.Now().Add(time.Duration(probeMs) * time.Millisecond)
	}
}

func (c *Client) useStream() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.polling {
		c.polling = false
		c.stats.Transport = protocol.TransportStream
		c.stats.Switches++
	}
}

// PollURL derives the poll URL from a stream URL: ws->http, wss->https, and the last
// path element "stream" -> "poll".
func PollURL(streamURL string) (string, error) {
	u, err := url.Parse(streamURL)
	if err != nil {
		return "", fmt.Errorf("rtclient: url: %w", err)
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	if p, ok := strings.CutSuffix(u.Path, "/stream"); ok {
		u.Path = p + "/poll"
	}
	return u.String(), nil
}

// pollLoop polls until the stream should be tried again (wait: how long to wait
// first), the server says not to retry (stop), or ctx ends.
func (c *Client) pollLoop(ctx context.Context) (wait time.Duration, stop error) {
	attempt := 0
	for ctx.Err() == nil {
		started := time.Now()
		resp, status, retryAfter, err := c.pollOnce(ctx)
		if ctx.Err() != nil {
			return 0, nil
		}
		var delay time.Duration
		switch {
		case err != nil:
			c.cfg.Logger.Debug("rtclient: poll failed", "err", err)
			attempt++
			delay = Backoff(attempt, c.cfg.BackoffMin, c.cfg.BackoffMax, rand.Float64())
		case status == http.StatusOK:
			attempt = 0
			c.handlePoll(resp)
			if resp.Transport == protocol.TransportStream {
				c.useStream()
				return 0, nil
			}
			c.mu.Lock()
			due := !c.probeAt.IsZero() && time.Now().After(c.probeAt)
			c.mu.Unlock()
			if due {
				c.useStream() // probe: a refusal (4300) brings us back here
				return 0, nil
			}
			if len(resp.Events) == 0 && time.Since(started) < 50*time.Millisecond {
				delay = 250 * time.Millisecond // answered at once with nothing: do not spin
			}
		case status == http.StatusNotFound || status == http.StatusMethodNotAllowed || status == http.StatusNotImplemented:
			c.useStream() // no long-polling here
			return 0, nil
		case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
			delay = retryAfter + time.Duration(rand.Int64N(int64(retryAfter/10)+1))
			if delay <= 0 {
				attempt++
				delay = Backoff(attempt, c.cfg.BackoffMin, c.cfg.BackoffMax, rand.Float64())
			}
		case status >= 400 && status < 500:
			return 0, fmt.Errorf("%w: poll answered HTTP %d", ErrStopped, status)
		default:
			attempt++
			delay = Backoff(attempt, c.cfg.BackoffMin, c.cfg.BackoffMax, rand.Float64())
		}
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return 0, nil
			case <-t.C:
			}
		}
	}
	return 0, nil
}

// pollOnce sends one poll with the current cursor.
func (c *Client) pollOnce(ctx context.Context) (resp *protocol.PollResponse, status int, retryAfter time.Duration, err error) {
	base := c.cfg.PollURL
	if base == "" {
		if base, err = PollURL(c.lastURL()); err != nil {
			return nil, 0, 0, err
		}
	}
	c.mu.Lock()
	cur := c.cursor
	c.mu.Unlock()
	q := url.Values{"channels": {strings.Join(c.cfg.Channels, ",")}, "timeout": {c.cfg.PollTimeout.String()}}
	if !cur.IsZero() {
		q.Set("cursor", protocol.FormatCursor(cur))
	}
	if c.cfg.Token != "" {
		q.Set("token", c.cfg.Token)
	}
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.PollTimeout+15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+sep+q.Encode(), nil)
	if err != nil {
		return nil, 0, 0, err
	}
	req.Header.Set("Accept", "application/json")
	res, err := c.cfg.HTTPClient.Do(req) // the transport asks for gzip and decodes it
	if err != nil {
		return nil, 0, 0, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxPollBody+1))
	if err != nil {
		return nil, res.StatusCode, 0, err
	}
	if len(body) > maxPollBody {
		return nil, res.StatusCode, 0, errors.New("rtclient: poll answer too large")
	}
	if res.StatusCode != http.StatusOK {
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err == nil && s > 0 {
			retryAfter = time.Duration(s) * time.Second
		}
		var pe protocol.PollError
		if json.Unmarshal(body, &pe) == nil && pe.RetryMs > 0 {
			retryAfter = time.Duration(pe.RetryMs) * time.Millisecond
		}
		return nil, res.StatusCode, retryAfter, nil
	}
	var pr protocol.PollResponse
	if err := json.Unmarshal(body, &pr); err != nil {
		return nil, res.StatusCode, 0, fmt.Errorf("rtclient: bad poll answer: %w", err)
	}
	return &pr, res.StatusCode, 0, nil
}

// handlePoll processes one answer: recovery, events (dedup), cursor.
func (c *Client) handlePoll(r *protocol.PollResponse) {
	c.mu.Lock()
	c.stats.Polls++
	if r.Recovery != nil && !r.Recovery.Recovered {
		c.stats.NotRecovered++
		c.cursor = r.Cursor
	}
	c.mu.Unlock()
	if r.Recovery != nil && c.cfg.OnRecovery != nil {
		c.cfg.OnRecovery(*r.Recovery)
	}
	for _, ev := range r.Events {
		c.handleEvent(ev)
	}
	c.mu.Lock()
	if c.cursor.Epoch == "" {
		c.cursor.Epoch = r.Cursor.Epoch
	}
	if r.Cursor.Epoch == c.cursor.Epoch && r.Cursor.Seq > c.cursor.Seq {
		c.cursor.Seq = r.Cursor.Seq
	}
	c.mu.Unlock()
}
