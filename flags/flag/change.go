package flag

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxChangeBytes bounds the body of a change request.
const MaxChangeBytes = 64 << 10

// Change is a partial update of one flag: nil fields keep their current value. A flag
// that does not exist yet (neither built in nor stored) starts as Enabled false,
// Rollout 100, no overrides.
type Change struct {
	Enabled     *bool   `json:"enabled,omitempty"`
	Rollout     *int    `json:"rollout,omitempty"`
	Description *string `json:"description,omitempty"`
	// SetOverrides adds or replaces per-user overrides.
	SetOverrides map[string]bool `json:"setOverrides,omitempty"`
	// RemoveOverrides deletes per-user overrides (applied before SetOverrides).
	RemoveOverrides []string `json:"removeOverrides,omitempty"`
	// ClearOverrides deletes every override (applied first).
	ClearOverrides bool `json:"clearOverrides,omitempty"`
	// IfRevision, when set, makes the change fail with ErrConflict unless the flag's
	// current revision equals it (0 = never changed).
	IfRevision *uint64 `json:"ifRevision,omitempty"`
	// Reason is recorded in the audit log.
	Reason string `json:"reason,omitempty"`
}

// wireChange is the JSON form, decoded strictly; numbers are kept raw and parsed by
// hand so the errors talk about percentages, not Go types (and "30" is refused).
type wireChange struct {
	Enabled         *bool           `json:"enabled"`
	Rollout         json.RawMessage `json:"rollout"`
	Description     *string         `json:"description"`
	SetOverrides    map[string]bool `json:"setOverrides"`
	RemoveOverrides []string        `json:"removeOverrides"`
	ClearOverrides  bool            `json:"clearOverrides"`
	IfRevision      json.RawMessage `json:"ifRevision"`
	Reason          string          `json:"reason"`
}

// DecodeChange reads one JSON object (at most MaxChangeBytes) and validates it. Every
// error wraps ErrInvalid and names the offending field.
func DecodeChange(r io.Reader) (Change, error) {
	body, err := io.ReadAll(io.LimitReader(r, MaxChangeBytes+1))
	if err != nil {
		return Change{}, fmt.Errorf("%w: reading change body: %w", ErrInvalid, err)
	}
	if len(body) > MaxChangeBytes {
		return Change{}, fmt.Errorf("%w: %w: change body larger than %d bytes", ErrInvalid, ErrTooLarge, MaxChangeBytes)
	}
	if !utf8.Valid(body) {
		return Change{}, fmt.Errorf("%w: change body is not valid UTF-8", ErrInvalid)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var w wireChange
	if err := dec.Decode(&w); err != nil {
		return Change{}, fmt.Errorf("%w: change body: %s", ErrInvalid, jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Change{}, fmt.Errorf("%w: change body: unexpected data after the JSON object", ErrInvalid)
	}
	c := Change{
		Enabled:         w.Enabled,
		Description:     w.Description,
		SetOverrides:    w.SetOverrides,
		RemoveOverrides: w.RemoveOverrides,
		ClearOverrides:  w.ClearOverrides,
		Reason:          w.Reason,
	}
	if raw := string(w.Rollout); raw != "" && raw != "null" {
		p, err := strconv.Atoi(raw)
		if err != nil || p < 0 || p > 100 {
			return Change{}, fmt.Errorf("%w: rollout %s: must be an integer percentage from 0 to 100", ErrInvalid, clip(raw))
		}
		c.Rollout = &p
	}
	if raw := string(w.IfRevision); raw != "" && raw != "null" {
		rev, err := strconv.ParseUint(raw, 10, 64)
		if err != nil {
			return Change{}, fmt.Errorf("%w: ifRevision %s: must be a non-negative integer", ErrInvalid, clip(raw))
		}
		c.IfRevision = &rev
	}
	if err := c.Validate(); err != nil {
		return Change{}, err
	}
	return c, nil
}

// jsonProblem turns a decoding error into a message without Go type names.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q has the wrong type (got JSON %s)", te.Field, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at byte %d", se.Offset)
	}
	if errors.Is(err, io.EOF) {
		return "empty body, expected a JSON object"
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "truncated JSON"
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field ") {
		return "unknown field " + strings.TrimPrefix(msg, "json: unknown field ")
	}
	return clip(msg)
}

// Validate checks a change on its own (the result is validated again when applied).
func (c *Change) Validate() error {
	if c.Enabled == nil && c.Rollout == nil && c.Description == nil && len(c.SetOverrides) == 0 &&
		len(c.RemoveOverrides) == 0 && !c.ClearOverrides {
		return fmt.Errorf("%w: change sets nothing: give at least one of enabled, rollout, description, setOverrides, removeOverrides, clearOverrides", ErrInvalid)
	}
	if c.Rollout != nil && (*c.Rollout < 0 || *c.Rollout > 100) {
		return fmt.Errorf("%w: rollout %d: must be an integer percentage from 0 to 100", ErrInvalid, *c.Rollout)
	}
	if c.Description != nil && (len(*c.Description) > MaxDescriptionLen || !utf8.ValidString(*c.Description)) {
		return fmt.Errorf("%w: description must be valid UTF-8 of at most %d bytes", ErrInvalid, MaxDescriptionLen)
	}
	if len(c.SetOverrides) > MaxOverrides || len(c.RemoveOverrides) > MaxOverrides {
		return fmt.Errorf("%w: at most %d overrides per change", ErrInvalid, MaxOverrides)
	}
	for u := range c.SetOverrides {
		if err := validateUserID(u); err != nil {
			return err
		}
	}
	for _, u := range c.RemoveOverrides {
		if err := validateUserID(u); err != nil {
			return err
		}
	}
	if len(c.Reason) > MaxReasonLen || !utf8.ValidString(c.Reason) {
		return fmt.Errorf("%w: reason must be valid UTF-8 of at most %d bytes", ErrInvalid, MaxReasonLen)
	}
	return nil
}

// apply returns cur with c applied, stamped with actor and now, validated. cur is the
// current definition (exists false: the flag is new). It does not touch Revision.
func (c *Change) apply(cur Flag, exists bool, actor string, now time.Time) (Flag, error) {
	if err := c.Validate(); err != nil {
		return Flag{}, err
	}
	if c.IfRevision != nil && *c.IfRevision != cur.Revision {
		return Flag{}, fmt.Errorf("%w: flag %s is at revision %d, the change expected %d", ErrConflict, cur.Name, cur.Revision, *c.IfRevision)
	}
	if len(actor) > MaxActorLen {
		return Flag{}, fmt.Errorf("%w: actor longer than %d bytes", ErrInvalid, MaxActorLen)
	}
	next := cur.clone()
	if !exists {
		next = Flag{Name: cur.Name, Rollout: 100}
	}
	if c.Enabled != nil {
		next.Enabled = *c.Enabled
	}
	if c.Rollout != nil {
		next.Rollout = *c.Rollout
	}
	if c.Description != nil {
		next.Description = *c.Description
	}
	if c.ClearOverrides {
		next.Overrides = nil
	}
	for _, u := range c.RemoveOverrides {
		delete(next.Overrides, u)
	}
	if len(c.SetOverrides) > 0 {
		if next.Overrides == nil {
			next.Overrides = make(map[string]bool, len(c.SetOverrides))
		}
		maps.Copy(next.Overrides, c.SetOverrides)
	}
	if len(next.Overrides) == 0 {
		next.Overrides = nil
	}
	next.UpdatedBy = actor
	next.UpdatedAt = now.UTC()
	if err := next.Validate(); err != nil {
		return Flag{}, err
	}
	return next, nil
}
