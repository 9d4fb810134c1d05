package stream

import (
	"math/rand/v2"
	"time"

	"github.com/coder/websocket"

	"encore.app/realtime/protocol"
)

// The streaming switch: which users may use the stream (Config.StreamingAllowed,
// replaced at run time by ApplyStreamingFlag, which the flag realtime-streaming-v2
// drives through realtime/streamflag), how refused and moved connections are told
// (close 4300, transport frame), and how polls learn that streaming is back.

// flagChange remembers the policy before the last change, so that a poll arriving
// just after streaming was allowed again (it was between two polls when waiting polls
// were woken) is answered "stream" at once instead of waiting for an event.
type flagChange struct {
	at   time.Time
	prev func(userID string) bool // nil: everyone was allowed
}

// recentChange is how long after a flag change a poll of a user who was not allowed
// before and is now gets "stream" without waiting.
const recentChange = 5 * time.Second

// justAllowed reports whether userID was refused streaming before the last change,
// made less than recentChange ago.
func (lp *longPoll) justAllowed(userID string) bool {
	c := lp.change.Load()
	return c != nil && c.prev != nil && time.Since(c.at) < recentChange && !c.prev(userID)
}

// StreamingAllowed reports whether userID may use the stream now.
func (e *Engine) StreamingAllowed(userID string) bool {
	f := e.lp.allowed.Load()
	return f == nil || (*f)(userID)
}

// ApplyStreamingFlag makes allowed the streaming policy (nil: everyone may stream) and
// applies it at once: every stream connection of a user no longer allowed gets a
// transport frame {"type":"transport","transport":"poll","retryMs":n} and is closed with
// 4300 and the same jittered retry hint ("retry=<ms>": when to probe the stream again),
// and every waiting poll re-evaluates its transport (polls of users allowed again answer
// transport "stream" within StreamReturnSpread). It returns how many connections it
// moved. allowed must be cheap and safe for concurrent use.
func (e *Engine) ApplyStreamingFlag(allowed func(userID string) bool) (moved int) {
	var prev func(string) bool
	if p := e.lp.allowed.Load(); p != nil {
		prev = *p
	}
	e.lp.change.Store(&flagChange{at: time.Now(), prev: prev})
	if allowed == nil {
		e.lp.allowed.Store(nil)
	} else {
		e.lp.allowed.Store(&allowed)
	}
	if allowed != nil {
		e.Clients(func(c *Client) {
			if !allowed(c.UserID()) && e.moveToPoll(c) {
				moved++
			}
		})
	}
	e.lp.wakeAll()
	if moved > 0 {
		e.log.Info("streaming flag applied", "moved_to_poll", moved)
	}
	return moved
}

// moveToPoll sends c to long-polling: a transport frame, then 4300 with a jittered
// retry hint. At most once per connection: a connection registered while the policy
// changed is looked at both by ApplyStreamingFlag and by its own check after register.
func (e *Engine) moveToPoll(c *Client) bool {
	if !c.movedToPoll.CompareAndSwap(false, true) {
		return false
	}
	hint := e.probeHint()
	c.Kick(protocol.Marshal(protocol.Transport{Type: protocol.TypeTransport, Transport: TransportPoll,
		RetryMs: hint, Reason: "streaming disabled"}), protocol.CloseUsePoll, "use long-poll", hint)
	e.metrics.poll.toPoll.Add(1)
	return true
}

// refuseStream closes a just-accepted connection with 4300 when the user may not
// stream. Browsers cannot read the HTTP status of a refused upgrade, so the refusal is
// a close code after the upgrade, with no welcome.
func (e *Engine) refuseStream(c *websocket.Conn, id *Identity) bool {
	if e.StreamingAllowed(id.UserID) {
		return false
	}
	e.metrics.poll.refusedUse.Add(1)
	_ = c.Close(websocket.StatusCode(protocol.CloseUsePoll), protocol.CloseReason("streaming disabled, use long-poll", e.probeHint()))
	return true
}

// probeHint is when a client moved to long-polling should probe the stream again: a
// uniform jitter in [PollProbeInterval/2, PollProbeInterval], milliseconds.
func (e *Engine) probeHint() int64 {
	iv := e.cfg.PollProbeInterval
	return (iv/2 + time.Duration(rand.Int64N(int64(iv/2)+1))).Milliseconds()
}
