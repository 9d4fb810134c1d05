package protocol

// Transport names: in transport frames, poll answers and health reports.
const (
	TransportStream = "stream"
	TransportPoll   = "poll"
)

// PollResponse is the body of a successful GET /v2/realtime/poll (docs/protocol.md
// "Long-polling"). Events are in seq order; Cursor is where the next poll continues
// (it may be past the last event: the answer is complete up to it); Recovery is set
// only when the request's cursor could not be recovered; Transport says which
// transport the client should use ("stream": streaming is allowed, probe it now;
// "poll": keep polling and probe the stream after RetryMs).
type PollResponse struct {
	Events    []Event   `json:"events"`
	Cursor    Cursor    `json:"cursor"`
	Recovery  *Recovery `json:"recovery,omitempty"`
	Transport string    `json:"transport"`
	RetryMs   int64     `json:"retryMs"`
}

// PollError is the body of a refused poll (4xx, 5xx). Results gives the verdict per
// channel when channels were refused (400 bad_channel, 403 forbidden); RetryMs repeats
// Retry-After in milliseconds for 429 and 503.
type PollError struct {
	Error   string          `json:"error"`
	Code    string          `json:"code"`
	Results []ChannelResult `json:"results,omitempty"`
	RetryMs int64           `json:"retryMs,omitempty"`
}
