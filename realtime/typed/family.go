package typed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"sync"

	"encore.app/realtime/protocol"
)

// Sentinel errors. Use errors.Is.
var (
	// ErrChannel: the parameters do not make a valid channel of the family.
	ErrChannel = errors.New("typed: bad channel")
	// ErrPayload: data does not match the family's payload schema.
	ErrPayload = errors.New("typed: payload does not match its schema")
)

// Publisher delivers one event to the realtime server and returns its ID. ev.Channel,
// ev.Type and ev.Data are set; ev.ID is the publisher's (optional) ID.
type Publisher interface {
	PublishEvent(ctx context.Context, ev *protocol.Event) (id string, err error)
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(ctx context.Context, ev *protocol.Event) (string, error)

// PublishEvent calls f.
func (f PublisherFunc) PublishEvent(ctx context.Context, ev *protocol.Event) (string, error) {
	return f(ctx, ev)
}

// Declared is the untyped view of a Family: what the generator and the validator read.
// Only *Family[T] implements it.
type Declared interface {
	// Name is the family's name, the TypeScript helper's ("orders").
	Name() string
	// Pattern is its channel pattern ("orders.{id}").
	Pattern() string
	// Params are the names of the pattern's parameters, in order.
	Params() []string
	// Payload is the payload type (a named struct).
	Payload() reflect.Type
	// Match reports whether channel belongs to the family.
	Match(channel string) bool

	schema() *payloadSchema
	// decodes reports whether data decodes into the payload type (strictly: no
	// unknown fields, numbers that fit).
	decodes(data []byte) error
}

// Family is a set of channels named by one pattern, all carrying payloads of type T.
// Declare families as package-level variables of the app's channels package, with
// NewFamily.
type Family[T any] struct {
	name, pattern string
	params        []string
	parts         []patternPart
	re            *regexp.Regexp
	payload       reflect.Type
	sch           payloadSchema
}

// patternPart is a literal or, when param is set, a parameter.
type patternPart struct {
	literal string
	param   string
}

// paramValue is what a parameter may be: channel characters without '.' and ':'.
const paramValue = `[A-Za-z0-9_@=-]+`

var (
	jsIdent     = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)
	goIdent     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	paramValRe  = regexp.MustCompile(`^` + paramValue + `$`)
	placeholder = regexp.MustCompile(`\{([^{}]*)\}`)
)

// NewFamily declares a family. name is the TypeScript helper's name (an identifier,
// conventionally lower camel case); pattern is a channel name with {param}
// placeholders; T must be a named struct type (its name becomes the TypeScript
// interface's). NewFamily panics on a bad declaration: families are package-level
// variables, and a test of the package catches it (like regexp.MustCompile).
func NewFamily[T any](name, pattern string) *Family[T] {
	f, err := newFamily[T](name, pattern)
	if err != nil {
		panic(err)
	}
	return f
}

func newFamily[T any](name, pattern string) (*Family[T], error) {
	if !jsIdent.MatchString(name) {
		return nil, fmt.Errorf("typed: family name %q is not an identifier", name)
	}
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct || !goIdent.MatchString(t.Name()) {
		return nil, fmt.Errorf("typed: family %s: payload %s is not a named struct type", name, t)
	}
	f := &Family[T]{name: name, pattern: pattern, payload: t}
	var re strings.Builder
	re.WriteString("^")
	last := 0
	seen := map[string]bool{}
	example := placeholder.ReplaceAllString(pattern, "x")
	if strings.ContainsAny(example, "{}") {
		return nil, fmt.Errorf("typed: family %s: unbalanced brace in %q", name, pattern)
	}
	if err := protocol.ValidateChannel(example, 0); err != nil {
		return nil, fmt.Errorf("typed: family %s: pattern %q: %w", name, pattern, err)
	}
	for _, m := range placeholder.FindAllStringSubmatchIndex(pattern, -1) {
		param := pattern[m[2]:m[3]]
		if !goIdent.MatchString(param) || seen[param] {
			return nil, fmt.Errorf("typed: family %s: parameter {%s} of %q: want a unique identifier", name, param, pattern)
		}
		if m[0] == last && last > 0 && f.parts[len(f.parts)-1].param != "" {
			return nil, fmt.Errorf("typed: family %s: parameters side by side in %q", name, pattern)
		}
		seen[param] = true
		if lit := pattern[last:m[0]]; lit != "" {
			f.parts = append(f.parts, patternPart{literal: lit})
			re.WriteString(regexp.QuoteMeta(lit))
		}
		f.parts = append(f.parts, patternPart{param: param})
		f.params = append(f.params, param)
		re.WriteString("(" + paramValue + ")")
		last = m[1]
	}
	if lit := pattern[last:]; lit != "" {
		f.parts = append(f.parts, patternPart{literal: lit})
		re.WriteString(regexp.QuoteMeta(lit))
	}
	re.WriteString("$")
	f.re = regexp.MustCompile(re.String())
	f.sch.typ = t
	return f, nil
}

// Name is the family's name.
func (f *Family[T]) Name() string { return f.name }

// Pattern is the family's channel pattern.
func (f *Family[T]) Pattern() string { return f.pattern }

// Params are the pattern's parameter names, in order.
func (f *Family[T]) Params() []string { return append([]string{}, f.params...) }

// Payload is T.
func (f *Family[T]) Payload() reflect.Type { return f.payload }

// Match reports whether channel is a channel of the family.
func (f *Family[T]) Match(channel string) bool { return f.re.MatchString(channel) }

// Parse returns the parameter values of a channel of the family, in the order of
// Params, and whether channel belongs to it.
func (f *Family[T]) Parse(channel string) ([]string, bool) {
	m := f.re.FindStringSubmatch(channel)
	if m == nil {
		return nil, false
	}
	return m[1:], true
}

func (f *Family[T]) schema() *payloadSchema { return &f.sch }

func (f *Family[T]) decodes(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var v T
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrPayload, f.payload.Name(), err)
	}
	return nil
}

// Channel returns the family's channel for the parameter values, in the order of
// Params. A wrong number of values, a bad value, or a name over the default channel
// length makes a Channel whose Err says why (and whose Publish returns it), so one
// call chain publishes: f.Channel(id).Publish(...).
func (f *Family[T]) Channel(params ...string) Channel[T] {
	if len(params) != len(f.params) {
		return Channel[T]{f: f, err: fmt.Errorf("%w: %s wants %d parameters (%s), got %d", ErrChannel, f.name, len(f.params), strings.Join(f.params, ", "), len(params))}
	}
	var b strings.Builder
	i := 0
	for _, p := range f.parts {
		if p.param == "" {
			b.WriteString(p.literal)
			continue
		}
		v := params[i]
		i++
		if !paramValRe.MatchString(v) {
			return Channel[T]{f: f, err: fmt.Errorf("%w: %s: {%s} = %q: want 1 or more of A-Z a-z 0-9 _ - @ =", ErrChannel, f.name, p.param, v)}
		}
		b.WriteString(v)
	}
	name := b.String()
	if err := protocol.ValidateChannel(name, 0); err != nil {
		return Channel[T]{f: f, err: fmt.Errorf("%w: %s: %w", ErrChannel, f.name, err)}
	}
	return Channel[T]{f: f, name: name}
}

// Channel is one channel of a Family[T]: only payloads of type T are published on it.
// The zero Channel is invalid.
type Channel[T any] struct {
	f    *Family[T]
	name string
	err  error
}

// String is the channel's name ("" when Err is not nil).
func (c Channel[T]) String() string { return c.name }

// Err says why the channel is invalid, or nil.
func (c Channel[T]) Err() error {
	if c.err == nil && c.f == nil {
		return fmt.Errorf("%w: zero Channel", ErrChannel)
	}
	return c.err
}

// Event encodes payload as the data of an event of type typ on the channel, after
// checking it against the family's schema (a nil slice, map or pointer is null in
// JSON, which the schema refuses unless the field is omitempty or tagged
// jsonschema:"nullable").
func (c Channel[T]) Event(typ string, payload T) (*protocol.Event, error) {
	if err := c.Err(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("typed: %s: encode %s: %w", c.name, c.f.payload, err)
	}
	if err := c.f.sch.validate(data); err != nil {
		if strings.Contains(err.Error(), "got null") {
			return nil, fmt.Errorf("%s: %w (a nil slice, map or pointer is null in JSON: make it non-nil, or tag the field omitempty or jsonschema:\"nullable\")", c.name, err)
		}
		return nil, fmt.Errorf("%s: %w", c.name, err)
	}
	return &protocol.Event{Channel: c.name, Type: typ, Data: data}, nil
}

// Publish sends payload as an event of type typ (free text, optional) on the channel
// through p and returns the event's ID.
func (c Channel[T]) Publish(ctx context.Context, p Publisher, typ string, payload T) (string, error) {
	ev, err := c.Event(typ, payload)
	if err != nil {
		return "", err
	}
	return p.PublishEvent(ctx, ev)
}

// payloadSchema is a family's compiled schema, built on first use.
type payloadSchema struct {
	typ  reflect.Type
	once sync.Once
	v    *validator
	err  error
}

func (s *payloadSchema) validate(data []byte) error {
	s.once.Do(func() { s.v, s.err = compileOne(s.typ) })
	if s.err != nil {
		return s.err
	}
	return s.v.validate(data)
}
