package typed

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"github.com/invopop/jsonschema"
)

// Families is the set of an app's families (encore.app/realtime/channels.Families):
// what the generator writes and the server's payload validation checks.
type Families []Declared

// Lookup returns the first family that channel belongs to, or nil.
func (fs Families) Lookup(channel string) Declared {
	for _, f := range fs {
		if f.Match(channel) {
			return f
		}
	}
	return nil
}

// Check reports duplicate names or patterns and families whose channels overlap (one
// family's pattern, every parameter filled in with a value, is a channel of another).
func (fs Families) Check() error {
	names, patterns := map[string]bool{}, map[string]bool{}
	for _, f := range fs {
		if names[f.Name()] {
			return fmt.Errorf("typed: two families named %s", f.Name())
		}
		if patterns[f.Pattern()] {
			return fmt.Errorf("typed: two families with the pattern %q", f.Pattern())
		}
		names[f.Name()], patterns[f.Pattern()] = true, true
	}
	for _, f := range fs {
		example := placeholder.ReplaceAllString(f.Pattern(), "x")
		for _, g := range fs {
			if g != f && g.Match(example) {
				return fmt.Errorf("typed: families %s (%q) and %s (%q) share channels such as %q", f.Name(), f.Pattern(), g.Name(), g.Pattern(), example)
			}
		}
	}
	return nil
}

// SchemaDraft is the JSON Schema dialect of a Bundle.
const SchemaDraft = "https://json-schema.org/draft/2020-12/schema"

// Bundle is the schema document of a set of families: every payload type's JSON
// Schema under $defs and the families that carry them. go generate writes it
// (channels.schema.json next to the app's families); the TypeScript generator reads it.
type Bundle struct {
	Schema   string                        `json:"$schema"`
	Comment  string                        `json:"$comment,omitempty"`
	Families []BundleFamily                `json:"families"`
	Defs     map[string]*jsonschema.Schema `json:"$defs"`
}

// BundleFamily is one family in a Bundle.
type BundleFamily struct {
	Name    string   `json:"name"`
	Pattern string   `json:"pattern"`
	Params  []string `json:"params"`
	// Payload is the key of the payload type's schema in $defs (the Go type's name).
	Payload string `json:"payload"`
	// GoType is the payload's Go type, with its package path.
	GoType string `json:"goType"`
}

// GoComments names Go source whose doc comments become the schema's descriptions
// (and the TypeScript types' comments): the files under Dir hold the package Base.
type GoComments struct {
	Base, Dir string
}

// Bundle reflects each family's payload type into JSON Schema (additional properties
// refused; every field without omitempty or omitzero required). Two payload types
// with one name and different schemas are an error.
func (fs Families) Bundle(comments ...GoComments) (*Bundle, error) {
	if err := fs.Check(); err != nil {
		return nil, err
	}
	r := reflector()
	for _, c := range comments {
		if err := r.AddGoComments(c.Base, c.Dir); err != nil {
			return nil, fmt.Errorf("typed: comments of %s: %w", c.Base, err)
		}
	}
	b := &Bundle{Schema: SchemaDraft, Families: []BundleFamily{}, Defs: map[string]*jsonschema.Schema{}}
	owner := map[string]reflect.Type{}
	for _, f := range fs {
		name, err := addType(b, r, f.Payload(), owner)
		if err != nil {
			return nil, fmt.Errorf("typed: family %s: %w", f.Name(), err)
		}
		b.Families = append(b.Families, BundleFamily{
			Name: f.Name(), Pattern: f.Pattern(), Params: f.Params(), Payload: name,
			GoType: f.Payload().PkgPath() + "." + f.Payload().Name(),
		})
	}
	return b, nil
}

// JSON is the bundle as go generate writes it (indented, a final newline).
func (b *Bundle) JSON() ([]byte, error) {
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

func reflector() *jsonschema.Reflector {
	return &jsonschema.Reflector{Anonymous: true}
}

// addType reflects t into b.Defs and returns its key there.
func addType(b *Bundle, r *jsonschema.Reflector, t reflect.Type, owner map[string]reflect.Type) (string, error) {
	s := r.ReflectFromType(t)
	name, ok := strings.CutPrefix(s.Ref, "#/$defs/")
	if !ok {
		return "", fmt.Errorf("payload %s has no schema of its own", t)
	}
	for k, def := range s.Definitions {
		if old, ok := b.Defs[k]; ok {
			same, err := sameJSON(old, def)
			if err != nil {
				return "", err
			}
			if !same {
				return "", fmt.Errorf("two payload types named %s with different fields (%s is one)", k, t)
			}
			continue
		}
		b.Defs[k] = def
	}
	if o, ok := owner[name]; ok && o != t {
		return "", fmt.Errorf("payload types %s and %s have one name", o, t)
	}
	owner[name] = t
	return name, nil
}

func sameJSON(a, b any) (bool, error) {
	x, err := json.Marshal(a)
	if err != nil {
		return false, err
	}
	y, err := json.Marshal(b)
	if err != nil {
		return false, err
	}
	return bytes.Equal(x, y), nil
}
