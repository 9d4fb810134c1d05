package protocol

import (
	"fmt"
	"strconv"
)

// Presence and history frames (docs/protocol.md "Presence" and "History"). A client that
// never sends them never receives any of them: old clients are unaffected.
const (
	// TypePresence is a client's request for a channel's presence snapshot and the
	// server's answer (PresenceSnapshot).
	TypePresence = "presence"
	// TypePresenceDiff carries joins and leaves of a channel to the connections that
	// subscribed to it with "presence": true.
	TypePresenceDiff = "presence_diff"
	// TypeHistory is a client's request for a channel's past events and the server's
	// answer (History).
	TypeHistory = "history"
)

// RequestFields are the fields of client frames added for presence and history; they
// are embedded in ClientFrame (flattened in JSON).
type RequestFields struct {
	// Presence on a subscribe asks for presence_diff frames of those channels.
	Presence bool `json:"presence,omitempty"`
	// Channel of a presence or history request.
	Channel string `json:"channel,omitempty"`
	// Limit: at most this many members (presence) or events (history); 0 = the
	// server's default, larger than the server's maximum = the maximum.
	Limit int `json:"limit,omitempty"`
	// Before and After bound a history request by seq (exclusive; 0 = unbounded):
	// without After it answers the newest events before Before (the head when 0);
	// with After, the oldest events after it.
	Before uint64 `json:"before,omitempty"`
	After  uint64 `json:"after,omitempty"`
	// Epoch, when set on a history request, must be the stream's epoch (the one the
	// client's seqs come from); a mismatch is refused with bad_cursor.
	Epoch string `json:"epoch,omitempty"`
}

// Member is one user present in a channel: its connections on every instance. Conns is
// 0 while every connection of the user is inside the leave grace period (reconnecting).
type Member struct {
	User  string `json:"user"`
	Conns int    `json:"conns"`
}

// PresenceSnapshot answers a presence request (frame and GET /v2/realtime/presence).
// Members is capped (the request's limit); Users and Conns count everyone: Users is
// the number of distinct users (anonymous connections excluded), Conns every
// connection including Anonymous ones. Approximate is set when an instance holds more
// members than it lists (PresenceMaxMembers): Users then sums the instances' counts
// and counts a user connected to two of them twice.
type PresenceSnapshot struct {
	Type        string   `json:"type,omitempty"` // TypePresence in a frame
	ID          string   `json:"id,omitempty"`
	Channel     string   `json:"channel"`
	Members     []Member `json:"members"`
	Users       int      `json:"users"`
	Conns       int      `json:"conns"`
	Anonymous   int      `json:"anonymous,omitempty"`
	Truncated   bool     `json:"truncated,omitempty"` // Members lists fewer than Users
	Approximate bool     `json:"approximate,omitempty"`
}

// PresenceDiff tells subscribers that asked for presence who joined and who left a
// channel (user ids; anonymous connections are never announced). A user joins when
// its first connection subscribes anywhere in the cluster and leaves when its last one
// has been gone for the grace period, or its instance died.
type PresenceDiff struct {
	Type    string   `json:"type"` // TypePresenceDiff
	Channel string   `json:"channel"`
	Joins   []string `json:"joins,omitempty"`
	Leaves  []string `json:"leaves,omitempty"`
}

// History answers a history request (frame and GET /v2/realtime/history): events of
// one channel in seq order. More says that the limit or the byte bound cut the answer:
// ask again with before = the first event's seq (newest-first requests) or after = the
// last one's (requests with after). Cursor, set when the answer reaches the head of
// the stream (no before), is the position up to which the answer is complete: a
// subscribe with that cursor continues with no gap and no duplicate. Source is
// "memory" (this instance's replay window), "bus" (the stream) or "mixed".
type History struct {
	Type    string  `json:"type,omitempty"` // TypeHistory in a frame
	ID      string  `json:"id,omitempty"`
	Channel string  `json:"channel"`
	Events  []Event `json:"events"`
	More    bool    `json:"more"`
	Epoch   string  `json:"epoch"`
	Cursor  *Cursor `json:"cursor,omitempty"`
	Source  string  `json:"source"`
}

// AppendHistoryFrame appends a history answer whose events are already encoded
// (EncodeEvent), so that events from the replay window are not encoded again.
// Type and ID are written when set (a frame); an HTTP answer leaves them empty.
func AppendHistoryFrame(dst []byte, h *History, encoded [][]byte) []byte {
	dst = append(dst, '{')
	if h.Type != "" {
		dst = append(dst, `"type":`...)
		dst = appendJSONString(dst, h.Type)
		dst = append(dst, ',')
	}
	if h.ID != "" {
		dst = append(dst, `"id":`...)
		dst = appendJSONString(dst, h.ID)
		dst = append(dst, ',')
	}
	dst = append(dst, `"channel":`...)
	dst = appendJSONString(dst, h.Channel)
	dst = append(dst, `,"events":[`...)
	for i, e := range encoded {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, e...)
	}
	dst = append(dst, `],"more":`...)
	dst = strconv.AppendBool(dst, h.More)
	dst = append(dst, `,"epoch":`...)
	dst = appendJSONString(dst, h.Epoch)
	if h.Cursor != nil {
		dst = fmt.Appendf(dst, `,"cursor":{"seq":%d,"epoch":`, h.Cursor.Seq)
		dst = appendJSONString(dst, h.Cursor.Epoch)
		dst = append(dst, '}')
	}
	dst = append(dst, `,"source":`...)
	dst = appendJSONString(dst, h.Source)
	return append(dst, '}')
}

// validateRequest checks a presence or history request: a channel (the caller checks
// the name itself, ValidateChannel, to answer bad_channel), a limit that is not
// negative, and for history a range that is not empty.
func validateRequest(f *ClientFrame) error {
	switch {
	case f.Channel == "":
		return fmt.Errorf("%w: %s needs a channel", ErrBadFrame, f.Type)
	case f.Limit < 0:
		return fmt.Errorf("%w: negative limit", ErrBadFrame)
	case f.Type == TypeHistory && f.Before > 0 && f.After >= f.Before:
		return fmt.Errorf("%w: history: after must be below before", ErrBadFrame)
	case f.Type == TypePresence && (f.Before > 0 || f.After > 0):
		return fmt.Errorf("%w: presence takes no before or after", ErrBadFrame)
	}
	return nil
}
