package rtclient

import (
	"context"

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
