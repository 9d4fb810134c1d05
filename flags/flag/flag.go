package flag

import (
	"fmt"
	"maps"
	"time"
	"unicode/utf8"
)

// StreamingV2 is the built-in flag that allows the WebSocket stream. When it is false
// for a user, the engine moves that user to long-polling.
const StreamingV2 = "realtime-streaming-v2"

// Limits on what a flag may hold. Each is checked by Validate and DecodeChange.
const (
	MaxNameLen        = 64   // flag name bytes
	MaxUserIDLen      = 256  // user ID bytes in an override
	MaxOverrides      = 1000 // overrides per flag
	MaxDescriptionLen = 500  // description bytes
	MaxReasonLen      = 500  // change reason bytes
	MaxActorLen       = 128  // actor bytes
)

// Flag is one boolean flag. Values handed out by an Evaluator or a store are copies
// the caller may keep; the Overrides map must not be modified.
type Flag struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Enabled is the kill switch: false turns the flag off for every user, overrides
	// included.
	Enabled bool `json:"enabled"`
	// Rollout is the percentage (0-100) of users, chosen by Bucket, who get true.
	Rollout int `json:"rollout"`
	// Overrides force the value for single users (while Enabled).
	Overrides map[string]bool `json:"overrides,omitempty"`

	// Set by the store, ignored in changes.
	Revision  uint64    `json:"revision"`            // KV revision; 0 = built-in default, never changed
	UpdatedBy string    `json:"updatedBy,omitempty"` // actor of the last change
	UpdatedAt time.Time `json:"updatedAt,omitzero"`  // time of the last change
}

// Builtins returns the flags every store starts with. Stored changes override them.
func Builtins() []Flag {
	return []Flag{{
		Name:        StreamingV2,
		Description: "Stream events over WebSocket; off = long-polling fallback.",
		Enabled:     true,
		Rollout:     100,
	}}
}

// Evaluate reports the flag's value for userID (see the package doc for the order).
func (f *Flag) Evaluate(userID string) bool {
	if !f.Enabled {
		return false
	}
	if v, ok := f.Overrides[userID]; ok {
		return v
	}
	return Bucket(f.Name, userID) < f.Rollout*100
}

// clone returns a copy with its own Overrides map.
func (f Flag) clone() Flag {
	f.Overrides = maps.Clone(f.Overrides)
	return f
}

// ValidateName checks the flag name format: 2-64 bytes of lower-case ASCII letters,
// digits and '-', starting with a letter and not ending with '-'. Names are also NATS
// KV keys, so this excludes '.', '*', '>' and spaces.
func ValidateName(name string) error {
	if len(name) < 2 || len(name) > MaxNameLen {
		return fmt.Errorf("%w: flag name %q: must be 2-%d characters", ErrInvalid, clip(name), MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z':
		case (c >= '0' && c <= '9') || c == '-':
			if i == 0 {
				return fmt.Errorf("%w: flag name %q: must start with a lower-case letter", ErrInvalid, clip(name))
			}
		default:
			return fmt.Errorf("%w: flag name %q: only lower-case letters, digits and '-' are allowed", ErrInvalid, clip(name))
		}
	}
	if name[len(name)-1] == '-' {
		return fmt.Errorf("%w: flag name %q: must not end with '-'", ErrInvalid, name)
	}
	return nil
}

// Validate checks every field against the limits above.
func (f *Flag) Validate() error {
	if err := ValidateName(f.Name); err != nil {
		return err
	}
	if f.Rollout < 0 || f.Rollout > 100 {
		return fmt.Errorf("%w: flag %s: rollout %d: must be a percentage from 0 to 100", ErrInvalid, f.Name, f.Rollout)
	}
	if len(f.Description) > MaxDescriptionLen || !utf8.ValidString(f.Description) {
		return fmt.Errorf("%w: flag %s: description must be valid UTF-8 of at most %d bytes", ErrInvalid, f.Name, MaxDescriptionLen)
	}
	if len(f.Overrides) > MaxOverrides {
		return fmt.Errorf("%w: flag %s: %d overrides: at most %d allowed", ErrInvalid, f.Name, len(f.Overrides), MaxOverrides)
	}
	for u := range f.Overrides {
		if err := validateUserID(u); err != nil {
			return fmt.Errorf("flag %s: %w", f.Name, err)
		}
	}
	if len(f.UpdatedBy) > MaxActorLen {
		return fmt.Errorf("%w: flag %s: updatedBy longer than %d bytes", ErrInvalid, f.Name, MaxActorLen)
	}
	return nil
}

func validateUserID(u string) error {
	if u == "" || len(u) > MaxUserIDLen || !utf8.ValidString(u) {
		return fmt.Errorf("%w: override user ID %q: must be valid UTF-8 of 1-%d bytes", ErrInvalid, clip(u), MaxUserIDLen)
	}
	return nil
}

// clip shortens s for error messages.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
