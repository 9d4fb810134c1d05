package realtime

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"encore.dev/beta/auth"
	"encore.dev/beta/errs"
	"encore.dev/rlog"

	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
)

// Stream upgrades to the multiplexed event stream (docs/protocol.md).
//
//encore:api auth raw method=GET path=/v2/realtime/stream
func (s *Service) Stream(w http.ResponseWriter, req *http.Request) {
	s.engine.ServeStream(w, req)
}

// Poll is the long-polling fallback with the same channels, cursor, auth and limits as
// the stream (docs/protocol.md "Long-polling").
//
//encore:api auth raw method=GET path=/v2/realtime/poll
func (s *Service) Poll(w http.ResponseWriter, req *http.Request) {
	s.engine.ServePoll(w, req)
}

// authenticate hands the engine the user Encore's auth handler accepted.
func authenticate(*http.Request) (*stream.Identity, error) {
	uid, _ := auth.UserID()
	id := &stream.Identity{UserID: string(uid)}
	if d, ok := auth.Data().(*UserData); ok && d != nil {
		id.Channels = d.Channels
		if d.ExpiresAt > 0 {
			id.ExpiresAt = time.UnixMilli(d.ExpiresAt)
		}
	}
	return id, nil
}

// PublishRequest is one event, or a batch in Events.
type PublishRequest struct {
	// PublisherKey is the publisher credential (separate from subscriber tokens).
	PublisherKey string          `header:"X-Publisher-Key"`
	Channel      string          `json:"channel"`
	Type         string          `json:"type"`
	ID           string          `json:"id"`
	Data         json.RawMessage `json:"data"`
	Events       []*PublishEvent `json:"events"`
}

// PublishEvent is one event of a batch.
type PublishEvent struct {
	Channel string          `json:"channel"`
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Data    json.RawMessage `json:"data"`
}

// PublishAck is the bus's answer for one event.
type PublishAck struct {
	ID        string `json:"id"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}

// PublishResponse lists one ack per event, in order.
type PublishResponse struct {
	Acks []*PublishAck `json:"acks"`
}

// Publish appends events to the bus directly (for HTTP publishers; services publish to
// the Events topic instead). It takes the publisher key, not a subscriber token.
//
//encore:api public method=POST path=/v2/realtime/publish
func Publish(ctx context.Context, req *PublishRequest) (*PublishResponse, error) {
	if secrets.PublisherKey == "" || subtle.ConstantTimeCompare([]byte(req.PublisherKey), []byte(secrets.PublisherKey)) != 1 {
		return nil, &errs.Error{Code: errs.Unauthenticated, Message: "publisher key required (X-Publisher-Key)"}
	}
	var evs []*protocol.Event
	if len(req.Events) > 0 {
		for _, e := range req.Events {
			evs = append(evs, &protocol.Event{Channel: e.Channel, Type: e.Type, ID: e.ID, Data: e.Data})
		}
	} else {
		evs = []*protocol.Event{{Channel: req.Channel, Type: req.Type, ID: req.ID, Data: req.Data}}
	}
	for _, ev := range evs {
		if err := protocol.ValidateEvent(ev, protocol.DefaultMaxChannelLength, 64<<10); err != nil {
			return nil, &errs.Error{Code: errs.InvalidArgument, Message: err.Error()}
		}
	}
	acks, err := svc.engine.Publish(ctx, evs)
	if err != nil {
		if errors.Is(err, bus.ErrUnavailable) {
			return nil, &errs.Error{Code: errs.Unavailable, Message: "bus unavailable, retry"}
		}
		rlog.Error("publish", "err", err)
		return nil, &errs.Error{Code: errs.Internal, Message: "publish failed"}
	}
	resp := &PublishResponse{}
	for _, a := range acks {
		resp.Acks = append(resp.Acks, &PublishAck{ID: a.ID, Seq: a.Seq, Duplicate: a.Duplicate})
	}
	return resp, nil
}

// Metrics reports this instance's figures (the same JSON as the standalone server).
//
//encore:api public raw method=GET path=/v2/realtime/metrics
func (s *Service) Metrics(w http.ResponseWriter, req *http.Request) {
	s.engine.ServeMetrics(w, req)
}
