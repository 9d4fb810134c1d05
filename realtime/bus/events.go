package bus

// What both buses share: the checks and the defaults of their contract, and the
// stored form of an event.

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nuid"

	"encore.app/realtime/protocol"
)

// prepareEvents checks a Publish call's events (every one, before anything is
// written: errors wrap protocol.ErrBadEvent or protocol.ErrBadChannel, maxChannel
// being the backend's limit on a channel's length), then fills in, in place, the
// missing IDs (a NUID) and TS (now, unix ms), so that a caller retrying the same
// events after an error is deduplicated.
func prepareEvents(evs []*protocol.Event, maxChannel int) error {
	for i, ev := range evs {
		if ev == nil {
			return fmt.Errorf("bus: publish: event %d: %w: nil", i, protocol.ErrBadEvent)
		}
		if err := checkEvent(ev, maxChannel); err != nil {
			return fmt.Errorf("bus: publish: event %d: %w", i, err)
		}
	}
	now := time.Now().UnixMilli()
	for _, ev := range evs {
		if ev.ID == "" {
			ev.ID = nuid.Next()
		}
		if ev.TS == 0 {
			ev.TS = now
		}
	}
	return nil
}

// checkEvent validates what ends up in the stored channel (a subject, a column), the
// dedup ID and the JSON body. maxChannel is what the backend can store; the engine's
// own, lower channel length limit is the engine's business, not the bus's.
func checkEvent(ev *protocol.Event, maxChannel int) error {
	if err := protocol.ValidateChannel(ev.Channel, maxChannel); err != nil {
		return err
	}
	if ev.ID != "" {
		if err := protocol.ValidateID(ev.ID); err != nil {
			return err
		}
	}
	if len(ev.Data) > 0 && !json.Valid(ev.Data) {
		return fmt.Errorf("%w: data is not valid JSON", protocol.ErrBadEvent)
	}
	return nil
}

// wireEvent is the stored message body: the event without Seq (Seq is the stream
// sequence). Data is kept verbatim.
type wireEvent struct {
	ID      string          `json:"id"`
	Channel string          `json:"channel"`
	Type    string          `json:"type,omitempty"`
	Data    json.RawMessage `json:"data,omitempty"`
	TS      int64           `json:"ts"`
}

// appendBody appends the stored form of ev: protocol.AppendEvent without the sequence.
func appendBody(b []byte, ev *protocol.Event) []byte {
	e := *ev
	e.Seq = 0
	return protocol.AppendEvent(b, &e)
}

// decodeBody turns a stored body into the event at seq on channel ch (which the
// backend stores apart from the body, and is authoritative).
func decodeBody(seq uint64, ch string, body []byte) (*protocol.Event, error) {
	var w wireEvent
	if err := json.Unmarshal(body, &w); err != nil {
		return nil, err
	}
	if w.Channel != "" && w.Channel != ch {
		return nil, fmt.Errorf("body channel %q differs from %q", w.Channel, ch)
	}
	return &protocol.Event{ID: w.ID, Seq: seq, Channel: ch, Type: w.Type, Data: w.Data, TS: w.TS}, nil
}

// replayChannels checks a Replay call's channel names (errors wrap
// protocol.ErrBadChannel) and returns them without repeats, in their order.
func replayChannels(channels []string, maxChannel int) ([]string, error) {
	uniq := make([]string, 0, len(channels))
	seen := make(map[string]bool, len(channels))
	for _, ch := range channels {
		if err := protocol.ValidateChannel(ch, maxChannel); err != nil {
			return nil, fmt.Errorf("bus: replay: %w", err)
		}
		if !seen[ch] {
			seen[ch] = true
			uniq = append(uniq, ch)
		}
	}
	return uniq, nil
}

// retention resolves the settings both buses share: zero takes the default, a
// negative MaxAge or MaxBytes means unlimited (an age of 0; a size of unlimitedBytes,
// which is the backend's word for it), and the dedup window is at most MaxAge
// (JetStream refuses a longer one; Postgres follows, so that both behave alike).
func retention(maxAge time.Duration, maxBytes int64, dupWindow time.Duration, unlimitedBytes int64) (time.Duration, int64, time.Duration) {
	switch {
	case maxAge == 0:
		maxAge = DefaultMaxAge
	case maxAge < 0:
		maxAge = 0
	}
	switch {
	case maxBytes == 0:
		maxBytes = DefaultMaxBytes
	case maxBytes < 0:
		maxBytes = unlimitedBytes
	}
	if dupWindow <= 0 {
		dupWindow = DefaultDupWindow
	}
	if maxAge > 0 && dupWindow > maxAge {
		dupWindow = maxAge
	}
	return maxAge, maxBytes, dupWindow
}
