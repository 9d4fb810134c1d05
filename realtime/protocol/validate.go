package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors of the decoders. Use errors.Is.
var (
	ErrBadFrame   = errors.New("bad frame")
	ErrBadChannel = errors.New("bad channel")
	ErrBadCursor  = errors.New("bad cursor")
	ErrBadEvent   = errors.New("bad event")
)

// Default limits; the server may be configured with others and announces them in Welcome.
const (
	DefaultMaxChannelLength = 128
	DefaultMaxIDLength      = 128
	DefaultMaxTypeLength    = 64
)

// ValidateChannel checks a channel name: 1..maxLen bytes of [A-Za-z0-9_-:@=] and
// single dots between non-empty parts (a channel maps to a NATS subject token path,
// so "*", ">", spaces and empty parts are refused).
func ValidateChannel(name string, maxLen int) error {
	if maxLen <= 0 {
		maxLen = DefaultMaxChannelLength
	}
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrBadChannel)
	}
	if len(name) > maxLen {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBadChannel, len(name), maxLen)
	}
	prevDot := true // no leading dot
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '-', c == ':', c == '@', c == '=':
			prevDot = false
		case c == '.':
			if prevDot {
				return fmt.Errorf("%w: empty part in %q", ErrBadChannel, name)
			}
			prevDot = true
		default:
			return fmt.Errorf("%w: character %q at %d not allowed", ErrBadChannel, c, i)
		}
	}
	if prevDot {
		return fmt.Errorf("%w: trailing dot in %q", ErrBadChannel, name)
	}
	return nil
}

// ValidateID checks a publisher-supplied event ID: 1..128 bytes of printable ASCII
// without quotes or backslashes.
func ValidateID(id string) error {
	if id == "" || len(id) > DefaultMaxIDLength {
		return fmt.Errorf("%w: id must be 1..%d bytes", ErrBadEvent, DefaultMaxIDLength)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return fmt.Errorf("%w: id character %q at %d not allowed", ErrBadEvent, c, i)
		}
	}
	return nil
}

// ValidateEvent checks what a publisher sends: channel, optional ID and type, data
// that is valid JSON (or empty).
func ValidateEvent(ev *Event, maxChannelLen int, maxDataBytes int) error {
	if err := ValidateChannel(ev.Channel, maxChannelLen); err != nil {
		return err
	}
	if ev.ID != "" {
		if err := ValidateID(ev.ID); err != nil {
			return err
		}
	}
	if len(ev.Type) > DefaultMaxTypeLength {
		return fmt.Errorf("%w: type longer than %d bytes", ErrBadEvent, DefaultMaxTypeLength)
	}
	if maxDataBytes > 0 && len(ev.Data) > maxDataBytes {
		return fmt.Errorf("%w: data is %d bytes, limit %d", ErrBadEvent, len(ev.Data), maxDataBytes)
	}
	if len(ev.Data) > 0 && !json.Valid(ev.Data) {
		return fmt.Errorf("%w: data is not valid JSON", ErrBadEvent)
	}
	return nil
}

// DecodeClientFrame decodes and checks one client text frame. Unknown fields are
// ignored (forward compatibility); unknown types, missing channels and bad cursors
// are errors wrapping ErrBadFrame or ErrBadCursor. maxChannels bounds the channels of
// one frame; the names are not checked here (ValidateChannel, per channel).
func DecodeClientFrame(b []byte, maxChannels int) (*ClientFrame, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadFrame)
	}
	var f ClientFrame
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if len(f.ID) > DefaultMaxIDLength {
		return &f, fmt.Errorf("%w: id longer than %d bytes", ErrBadFrame, DefaultMaxIDLength)
	}
	switch f.Type {
	case TypeSubscribe, TypeUnsubscribe:
		if len(f.Channels) == 0 {
			return &f, fmt.Errorf("%w: %s needs channels", ErrBadFrame, f.Type)
		}
		if maxChannels > 0 && len(f.Channels) > maxChannels {
			return &f, fmt.Errorf("%w: %d channels in one frame, limit %d", ErrBadFrame, len(f.Channels), maxChannels)
		}
		if f.Type == TypeUnsubscribe && f.Cursor != nil {
			return &f, fmt.Errorf("%w: unsubscribe takes no cursor", ErrBadFrame)
		}
		if f.Cursor != nil && f.Cursor.Seq > 0 && f.Cursor.Epoch == "" {
			return &f, fmt.Errorf("%w: cursor with seq needs an epoch", ErrBadCursor)
		}
		// Channel names are checked one by one by the caller (ValidateChannel) so that
		// one bad name, however long, fails only itself: a per-channel bad_channel.
		// The frame size bounds them all.
	case TypePing, TypePong:
	case TypeHealth:
		if f.Health == nil {
			return &f, fmt.Errorf("%w: health needs a health object", ErrBadFrame)
		}
	case TypeAuth:
		if f.Token == "" {
			return &f, fmt.Errorf("%w: auth needs a token", ErrBadFrame)
		}
	case "":
		return &f, fmt.Errorf("%w: missing type", ErrBadFrame)
	default:
		return &f, fmt.Errorf("%w: unknown type %q", ErrBadFrame, f.Type)
	}
	return &f, nil
}

// FormatCursor renders a cursor as "<seq>.<epoch>", the form used in URLs (poll, resume).
func FormatCursor(c Cursor) string {
	return strconv.FormatUint(c.Seq, 10) + "." + c.Epoch
}

// ParseCursor parses FormatCursor's output. The empty string is the zero cursor.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	seq, epoch, ok := strings.Cut(s, ".")
	if !ok || seq == "" || epoch == "" || len(epoch) > 64 {
		return Cursor{}, fmt.Errorf("%w: want <seq>.<epoch>", ErrBadCursor)
	}
	for i := 0; i < len(epoch); i++ {
		c := epoch[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return Cursor{}, fmt.Errorf("%w: bad epoch", ErrBadCursor)
		}
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return Cursor{}, fmt.Errorf("%w: seq: %v", ErrBadCursor, err)
	}
	return Cursor{Seq: n, Epoch: epoch}, nil
}
