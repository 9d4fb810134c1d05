package protocol

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Version is the protocol version announced in the welcome frame.
const Version = 1

// Frame types sent by the client.
const (
	TypeSubscribe   = "subscribe"
	TypeUnsubscribe = "unsubscribe"
	TypePing        = "ping"
	TypePong        = "pong"
	TypeHealth      = "health"
	TypeAuth        = "auth" // fresh token while connected
)

// Frame types sent by the server.
const (
	TypeWelcome    = "welcome"
	TypeSubscribed = "subscribed"
	TypeEvents     = "events"
	TypeTransport  = "transport"
	TypeError      = "error"
	// TypePing and TypePong are used in both directions.
)

// Event is one published event as clients see it. Data is the publisher's JSON, verbatim.
type Event struct {
	ID      string          `json:"id"`
	Seq     uint64          `json:"seq"`
	Channel string          `json:"channel"`
	Type    string          `json:"type,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	TS      int64           `json:"ts"` // publish time, unix milliseconds (server clock)
}

// Cursor is a client's position in the event stream: the highest sequence it has
// processed and the epoch of the stream that sequence belongs to.
type Cursor struct {
	Seq   uint64 `json:"seq"`
	Epoch string `json:"epoch"`
}

// IsZero reports whether c carries no position (a fresh client).
func (c *Cursor) IsZero() bool { return c == nil || (c.Seq == 0 && c.Epoch == "") }

// ClientFrame is any frame a client sends. Type selects which fields matter.
type ClientFrame struct {
	Type string `json:"type"`
	// ID is an optional request ID echoed in the answer (subscribe, unsubscribe, errors).
	ID string `json:"id,omitempty"`
	// Channels for subscribe and unsubscribe.
	Channels []string `json:"channels,omitempty"`
	// Cursor for subscribe: replay everything after it, then go live.
	Cursor *Cursor `json:"cursor,omitempty"`
	// TS for ping (client clock) and pong (echo of the server's ping ts), unix ms.
	TS int64 `json:"ts,omitempty"`
	// Token for auth.
	Token string `json:"token,omitempty"`
	// Health for health reports.
	Health *HealthReport `json:"health,omitempty"`
}

// HealthReport is the client's periodic view of its own connection.
type HealthReport struct {
	RTTMillis        float64 `json:"rttMs"`
	LatencyP50Millis float64 `json:"latencyP50Ms"`
	LatencyP99Millis float64 `json:"latencyP99Ms"`
	ClockOffsetMs    float64 `json:"clockOffsetMs"`
	Reconnects       uint64  `json:"reconnects"`
	Recoveries       uint64  `json:"recoveries"`
	EventsReceived   uint64  `json:"eventsReceived"`
	Duplicates       uint64  `json:"duplicates"`
	Transport        string  `json:"transport,omitempty"`
}

// Welcome is the first frame on every stream connection.
type Welcome struct {
	Type        string          `json:"type"`
	Version     int             `json:"version"`
	Session     string          `json:"session"`
	Instance    string          `json:"instance"`
	HeartbeatMs int64           `json:"heartbeatMs"`
	ServerTime  int64           `json:"serverTime"`
	Epoch       string          `json:"epoch"`
	Seq         uint64          `json:"seq"` // head of the stream when the connection opened
	Flags       map[string]bool `json:"flags,omitempty"`
	Limits      Limits          `json:"limits"`
}

// Limits tells the client the bounds it must respect.
type Limits struct {
	MaxFrameBytes    int64 `json:"maxFrameBytes"`
	MaxSubscriptions int   `json:"maxSubscriptions"`
	MaxChannelLength int   `json:"maxChannelLength"`
	MaxBatchEvents   int   `json:"maxBatchEvents"`
}

// ChannelResult is the per-channel answer to a subscribe or unsubscribe.
type ChannelResult struct {
	Channel string `json:"channel"`
	OK      bool   `json:"ok"`
	Code    string `json:"code,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Subscribed answers a subscribe or unsubscribe frame.
type Subscribed struct {
	Type    string          `json:"type"`
	ID      string          `json:"id,omitempty"`
	Op      string          `json:"op"` // "subscribe" or "unsubscribe"
	Results []ChannelResult `json:"results"`
	// Recovery is set when the subscribe carried a cursor.
	Recovery *Recovery `json:"recovery,omitempty"`
	Epoch    string    `json:"epoch"`
}

// Recovery says whether the missed events after a cursor will be delivered.
// Recovered=true: every event after Cursor.Seq on the subscribed channels follows, in
// order, before any live event; none is missing. Recovered=false: the gap cannot be
// filled (Reason says why); the subscription is live from now and the client must
// resync its state from its source of truth.
type Recovery struct {
	Recovered bool   `json:"recovered"`
	Reason    string `json:"reason,omitempty"`
	From      uint64 `json:"from"` // first sequence that may follow
	To        uint64 `json:"to"`   // last replayed sequence (the live stream continues after it)
	Source    string `json:"source,omitempty"`
}

// Recovery reasons.
const (
	ReasonEpochMismatch = "epoch_mismatch"
	ReasonTooOld        = "too_old"
	ReasonFuture        = "cursor_ahead"
	ReasonUnavailable   = "unavailable"
	ReasonHasSubs       = "cursor_after_live_subscribe"
)

// Ping is sent by either side; the other answers Pong echoing TS.
type Ping struct {
	Type string `json:"type"`
	TS   int64  `json:"ts"`
	// Seq and Epoch (server pings only; absent from older servers and when nothing was
	// ever published): every event with seq <= Seq of this connection's channels was
	// written to it before this ping. A client that has every answer to its subscribes
	// may take {Seq, Epoch} as its cursor when Epoch is its cursor's epoch and Seq is
	// higher (docs/protocol.md "Fresh cursors on quiet channels").
	Seq   uint64 `json:"seq,omitempty"`
	Epoch string `json:"epoch,omitempty"`
}

// Pong answers a ping: TS echoes the ping, ServerTime is the server clock (unix ms)
// when the server answers a client's ping.
type Pong struct {
	Type       string `json:"type"`
	TS         int64  `json:"ts"`
	ServerTime int64  `json:"serverTime,omitempty"`
}

// Transport tells a client which transport to use: "poll" (switch to long-polling) or
// "stream" (streaming allowed again). RetryMs hints when to probe the other one.
type Transport struct {
	Type      string `json:"type"`
	Transport string `json:"transport"`
	RetryMs   int64  `json:"retryMs,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// ErrorFrame reports a problem with one client frame; the connection stays open.
type ErrorFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error codes used in error frames and channel results.
const (
	CodeBadFrame        = "bad_frame"
	CodeUnknownType     = "unknown_type"
	CodeBadChannel      = "bad_channel"
	CodeForbidden       = "forbidden"
	CodeTooManySubs     = "too_many_subscriptions"
	CodeRateLimited     = "rate_limited"
	CodeNotSubscribed   = "not_subscribed"
	CodeBadCursor       = "bad_cursor"
	CodeBadToken        = "bad_token"
	CodeInternal        = "internal"
	CodeUnavailable     = "unavailable"
	CodeAlreadyReplying = "replay_in_progress"
)

// AppendEventsFrame appends {"type":"events","events":[e1,e2,...]} to dst, where each
// element of encoded is an event already encoded as a JSON object. No re-encoding:
// one encoded event is shared by every connection that receives it.
func AppendEventsFrame(dst []byte, encoded [][]byte) []byte {
	dst = append(dst, `{"type":"events","events":[`...)
	for i, e := range encoded {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, e...)
	}
	return append(dst, "]}"...)
}

// EncodeEvent encodes ev as the JSON object used inside events frames.
func EncodeEvent(ev *Event) []byte {
	return AppendEvent(make([]byte, 0, 96+len(ev.ID)+len(ev.Channel)+len(ev.Type)+len(ev.Data)), ev)
}

// AppendEvent appends ev as a JSON object to b. "seq" is left out when zero (the form the
// bus stores: the sequence is the bus's own).
func AppendEvent(b []byte, ev *Event) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, ev.ID)
	if ev.Seq > 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, ev.Seq, 10)
	}
	b = append(b, `,"channel":`...)
	b = appendJSONString(b, ev.Channel)
	if ev.Type != "" {
		t, _ := json.Marshal(ev.Type)
		b = append(b, `,"type":`...)
		b = append(b, t...)
	}
	if len(ev.Data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, ev.Data...)
	}
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, ev.TS, 10)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string. Printable ASCII (the validated form of
// ids and channels) takes the fast path; anything else goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	return strconv.AppendQuote(b, s) // for printable ASCII, Go quoting equals JSON quoting
}

// Marshal encodes a server frame. Frames are plain structs, so errors mean a bug.
func Marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("protocol: marshal %T: %v", v, err))
	}
	return b
}
