package typed

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"

	invopop "github.com/invopop/jsonschema"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"

	"encore.app/realtime/protocol"
)

// Validator checks published events against the payload schemas of a set of families
// (github.com/santhosh-tekuri/jsonschema, draft 2020-12). Safe for concurrent use.
type Validator struct {
	fams    Families
	schemas map[Declared]*validator
}

// Validator compiles the families' schemas (the Bundle's).
func (fs Families) Validator() (*Validator, error) {
	b, err := fs.Bundle()
	if err != nil {
		return nil, err
	}
	c, err := compiler(b)
	if err != nil {
		return nil, err
	}
	v := &Validator{fams: fs, schemas: map[Declared]*validator{}}
	for i, f := range fs {
		if v.schemas[f], err = compileDef(c, b.Families[i].Payload); err != nil {
			return nil, fmt.Errorf("typed: family %s: %w", f.Name(), err)
		}
	}
	return v, nil
}

// Check validates ev.Data against the schema of the family ev.Channel belongs to, then
// decodes it strictly into the payload type, so that what passes is valid for the
// TypeScript type and for Go subscribers alike (JSON Schema's "integer" takes 1.0 and
// 1e400, which an int64 does not). Channels of no family pass. The error wraps
// ErrPayload.
func (v *Validator) Check(ev *protocol.Event) error {
	f := v.fams.Lookup(ev.Channel)
	if f == nil {
		return nil
	}
	err := v.schemas[f].validate(ev.Data)
	if err == nil {
		err = f.decodes(ev.Data)
	}
	if err != nil {
		return fmt.Errorf("channel %s (family %s): %w", ev.Channel, f.Name(), err)
	}
	return nil
}

// validator is one payload type's compiled schema.
type validator struct {
	name string
	sch  *jsonschema.Schema
}

const bundleURL = "channels.schema.json"

func compiler(b *Bundle) (*jsonschema.Compiler, error) {
	raw, err := b.JSON()
	if err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(bundleURL, doc); err != nil {
		return nil, err
	}
	return c, nil
}

func compileDef(c *jsonschema.Compiler, name string) (*validator, error) {
	sch, err := c.Compile(bundleURL + "#/$defs/" + name)
	if err != nil {
		return nil, err
	}
	return &validator{name: name, sch: sch}, nil
}

// compileOne compiles the schema of one payload type (Family.Event's check).
func compileOne(t reflect.Type) (*validator, error) {
	b := &Bundle{Schema: SchemaDraft, Families: []BundleFamily{}, Defs: map[string]*invopop.Schema{}}
	name, err := addType(b, reflector(), t, map[string]reflect.Type{})
	if err != nil {
		return nil, err
	}
	c, err := compiler(b)
	if err != nil {
		return nil, err
	}
	return compileDef(c, name)
}

var printer = message.NewPrinter(language.English)

// validate checks one payload (absent data is null).
func (v *validator) validate(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("null")
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("%w: %s: not JSON: %v", ErrPayload, v.name, err)
	}
	err = v.sch.Validate(inst)
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		var leaves []string
		collect(ve, &leaves)
		return fmt.Errorf("%w: %s: %s", ErrPayload, v.name, strings.Join(leaves, "; "))
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrPayload, v.name, err)
	}
	return nil
}

// collect lists the innermost failures as "at /path: message".
func collect(e *jsonschema.ValidationError, out *[]string) {
	if len(e.Causes) > 0 {
		for _, c := range e.Causes {
			collect(c, out)
		}
		return
	}
	loc := "/" + strings.Join(e.InstanceLocation, "/")
	*out = append(*out, "at "+loc+": "+e.ErrorKind.LocalizedString(printer))
}
