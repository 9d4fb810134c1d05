package rtclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"encore.app/realtime/protocol"
)

// Publisher publishes events over HTTP (POST /v2/realtime/publish, docs/protocol.md)
// with a publisher key. It is the typed.Publisher of Go programs that talk to a
// realtime server from outside: channels.Orders.Channel(id).Publish(ctx, pub, ...).
// A Publisher holds no state of its own; it is safe for concurrent use.
type Publisher struct {
	// URL is the publish endpoint, e.g. http://127.0.0.1:4000/v2/realtime/publish.
	URL string
	// Key is the publisher key, sent as Authorization: Bearer <Key>.
	Key string
	// HTTPClient carries the requests (default http.DefaultClient).
	HTTPClient *http.Client
}

// Ack is the server's answer for one published event.
type Ack struct {
	ID        string `json:"id"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
}

// PublishError is a publish the server refused: Status is the HTTP status (400 a bad
// event, 401 a wrong key, 413 too large, 503 bus unavailable), Message its reason and
// RetryAfter the server's hint (0 when it gave none; 503 sends one).
type PublishError struct {
	Status     int
	Message    string
	RetryAfter time.Duration
}

func (e *PublishError) Error() string {
	return fmt.Sprintf("rtclient: publish refused: %d %s", e.Status, e.Message)
}

// Publish sends evs in one request (all or none are appended) and returns their acks,
// in order. A refusal is a *PublishError.
func (p *Publisher) Publish(ctx context.Context, evs ...*protocol.Event) ([]Ack, error) {
	var body []byte
	var err error
	if len(evs) == 1 {
		body, err = json.Marshal(evs[0])
	} else {
		body, err = json.Marshal(struct {
			Events []*protocol.Event `json:"events"`
		}{evs})
	}
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.URL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+p.Key)
	hc := p.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(raw, &e)
		pe := &PublishError{Status: resp.StatusCode, Message: e.Error}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
			pe.RetryAfter = time.Duration(s) * time.Second
		}
		return nil, pe
	}
	var out struct {
		Acks []Ack `json:"acks"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("rtclient: publish answer: %w", err)
	}
	if len(out.Acks) != len(evs) {
		return nil, fmt.Errorf("rtclient: publish answer has %d acks for %d events", len(out.Acks), len(evs))
	}
	return out.Acks, nil
}

// PublishEvent publishes one event and returns its ID (typed.Publisher).
func (p *Publisher) PublishEvent(ctx context.Context, ev *protocol.Event) (string, error) {
	acks, err := p.Publish(ctx, ev)
	if err != nil {
		return "", err
	}
	return acks[0].ID, nil
}
