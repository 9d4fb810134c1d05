package protocol

import (
	"fmt"
	"strconv"
	"strings"
)

// CloseCode is a WebSocket close status used by the stream. Application codes live in
// 4000-4999 and are grouped by what the client must do next:
//
//	4000-4099  reconnect with backoff (exponential, full jitter)
//	4100-4199  reconnect after the delay in the close reason ("retry=<ms>"), resume by cursor
//	4200-4299  get a fresh token, then reconnect
//	4300-4399  switch to long-polling; probe the stream again after "retry=<ms>"
//	4400-4499  do not reconnect (the request can never succeed as it is)
//
// Standard codes: 1000 normal (do not reconnect unless the app wants to), 1001 going
// away (reconnect with backoff), 1007 invalid frame payload data (do not reconnect),
// 1009 message too big (do not reconnect), 1011 internal error (reconnect with
// backoff), 1006 abnormal (no close frame: reconnect with backoff).
type CloseCode int

// Close codes. The table in docs/protocol.md mirrors this block; client/src/codes.gen.ts is
// generated from it and from ActionFor (go generate ./cmd/tscodes; go test ./cmd/tscodes
// fails when it is stale).
const (
	CloseNormal      CloseCode = 1000
	CloseGoingAway   CloseCode = 1001
	CloseBadData     CloseCode = 1007 // a text frame that is not valid UTF-8 (RFC 6455); do not reconnect
	CloseTooBig      CloseCode = 1009
	CloseInternal    CloseCode = 1011
	CloseAbnormal    CloseCode = 1006
	CloseReconnect   CloseCode = 4000 // generic: reconnect with backoff
	CloseHeartbeat   CloseCode = 4001 // no pong/traffic within the heartbeat timeout
	CloseSlow        CloseCode = 4100 // slow consumer: queue overflowed; resume by cursor after retry
	CloseShutdown    CloseCode = 4101 // server draining; reconnect (elsewhere) after retry
	CloseRateLimited CloseCode = 4102 // too many connects or messages; retry after
	CloseOverloaded  CloseCode = 4103 // instance at capacity or dependency down; retry after
	CloseTooMany     CloseCode = 4104 // per-user connection cap reached; retry after
	CloseQueueBudget CloseCode = 4105 // queued-bytes budget exceeded, this connection held the most; resume by cursor after retry
	CloseTokenExpire CloseCode = 4200 // token expired; refresh it, then reconnect
	CloseUsePoll     CloseCode = 4300 // streaming disabled for this user; long-poll, probe after retry
	CloseBadRequest  CloseCode = 4400 // protocol violation the client cannot fix by retrying
	CloseUnauthorize CloseCode = 4401 // no or invalid credentials
	CloseForbidden   CloseCode = 4403 // not allowed (origin, ...)
)

// Action is what a client must do after a close.
type Action int

// Client actions after a close.
const (
	ActionBackoff Action = iota
	ActionRetryAfter
	ActionRefreshToken
	ActionUsePoll
	ActionStop
)

func (a Action) String() string {
	switch a {
	case ActionBackoff:
		return "backoff"
	case ActionRetryAfter:
		return "retry-after"
	case ActionRefreshToken:
		return "refresh-token"
	case ActionUsePoll:
		return "use-poll"
	default:
		return "stop"
	}
}

// ActionFor maps a close code to the client's next action.
func ActionFor(code CloseCode) Action {
	switch {
	case code >= 4000 && code < 4100:
		return ActionBackoff
	case code >= 4100 && code < 4200:
		return ActionRetryAfter
	case code >= 4200 && code < 4300:
		return ActionRefreshToken
	case code >= 4300 && code < 4400:
		return ActionUsePoll
	case code >= 4400 && code < 5000:
		return ActionStop
	case code == CloseNormal, code == CloseTooBig, code == 1002, code == 1003, code == CloseBadData, code == 1008:
		return ActionStop
	default: // 1001, 1006, 1011, 1012, 1013 and unknown
		return ActionBackoff
	}
}

// CloseReason formats a close reason with an optional retry hint; the result fits the
// 123-byte limit of a close frame.
func CloseReason(text string, retryMs int64) string {
	r := text
	if retryMs > 0 {
		r = fmt.Sprintf("%s retry=%d", text, retryMs)
	}
	if len(r) > 123 {
		r = r[:123]
	}
	return r
}

// RetryHint extracts "retry=<ms>" from a close reason; 0 if absent.
func RetryHint(reason string) int64 {
	i := strings.LastIndex(reason, "retry=")
	if i < 0 {
		return 0
	}
	s := reason[i+len("retry="):]
	if j := strings.IndexByte(s, ' '); j >= 0 {
		s = s[:j]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}
