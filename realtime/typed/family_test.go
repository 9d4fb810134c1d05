package typed

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"encore.app/realtime/protocol"
)

type order struct {
	ID     string `json:"id"`
	Status string `json:"status" jsonschema:"enum=created,enum=shipped"`
	Items  []item `json:"items"`
	Note   string `json:"note,omitempty"`
}

type item struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

func TestNewFamilyRefusesBadDeclarations(t *testing.T) {
	for _, tc := range []struct {
		name, pattern, want string
	}{
		{"orders", "orders..{id}", "empty part"},
		{"orders", "orders.{id", "unbalanced"},
		{"orders", "orders.id}", "unbalanced"},
		{"orders", "orders.{}", "identifier"},
		{"orders", "orders.{a.b}", "identifier"},
		{"orders", "orders.{id}.{id}", "unique"},
		{"orders", "orders.{a}{b}", "side by side"},
		{"orders", "orders.*", "not allowed"},
		{"orders", "orders.{id}.", "trailing dot"},
		{"orders", "", "empty"},
		{"my-orders", "orders.{id}", "not an identifier"},
		{"", "orders.{id}", "not an identifier"},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			_, err := newFamily[order](tc.name, tc.pattern)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("newFamily(%q, %q) = %v, want an error containing %q", tc.name, tc.pattern, err, tc.want)
			}
		})
	}
	if _, err := newFamily[string]("s", "s"); err == nil || !strings.Contains(err.Error(), "named struct") {
		t.Errorf("string payload: %v", err)
	}
	if _, err := newFamily[struct{ A int }]("s", "s"); err == nil || !strings.Contains(err.Error(), "named struct") {
		t.Errorf("unnamed struct payload: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("NewFamily did not panic on a bad pattern")
		}
	}()
	NewFamily[order]("orders", "orders.{")
}

func TestChannel(t *testing.T) {
	orders := NewFamily[order]("orders", "orders.{id}")
	inbox := NewFamily[order]("inbox", "user:{uid}:inbox.{box}")
	fixed := NewFamily[order]("news", "public.news")
	for _, tc := range []struct {
		f      *Family[order]
		params []string
		want   string // "" = invalid
	}{
		{orders, []string{"42"}, "orders.42"},
		{orders, []string{"a_b-c@d=e"}, "orders.a_b-c@d=e"},
		{inbox, []string{"7", "main"}, "user:7:inbox.main"},
		{fixed, nil, "public.news"},
		{orders, nil, ""},
		{orders, []string{"1", "2"}, ""},
		{orders, []string{""}, ""},
		{orders, []string{"4.2"}, ""},            // a dot would add a part
		{inbox, []string{"7:admin", "main"}, ""}, // a colon would forge the user part
		{orders, []string{"a b"}, ""},
		{orders, []string{"*"}, ""},
		{orders, []string{strings.Repeat("x", 130)}, ""},
	} {
		ch := tc.f.Channel(tc.params...)
		if tc.want == "" {
			if ch.Err() == nil || !errors.Is(ch.Err(), ErrChannel) || ch.String() != "" {
				t.Errorf("%s%q: %q, %v: want ErrChannel", tc.f.Name(), tc.params, ch, ch.Err())
			}
			if _, err := ch.Publish(context.Background(), nil, "", order{}); !errors.Is(err, ErrChannel) {
				t.Errorf("%s%q: Publish = %v, want ErrChannel", tc.f.Name(), tc.params, err)
			}
			continue
		}
		if ch.Err() != nil || ch.String() != tc.want {
			t.Errorf("%s%q = %q, %v; want %q", tc.f.Name(), tc.params, ch, ch.Err(), tc.want)
			continue
		}
		if !tc.f.Match(tc.want) {
			t.Errorf("%s does not match its own channel %q", tc.f.Name(), tc.want)
		}
		if got, ok := tc.f.Parse(tc.want); !ok || !slices.Equal(got, tc.params) && len(tc.params) > 0 {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.want, got, ok, tc.params)
		}
	}
	if err := (Channel[order]{}).Err(); !errors.Is(err, ErrChannel) {
		t.Errorf("zero Channel: %v", err)
	}
	for _, ch := range []string{"orders", "orders.", "orders.1.2", "xorders.1", "orders.1x.", "user:7:admin:inbox.main", "user:7:inbox"} {
		if orders.Match(ch) || inbox.Match(ch) {
			t.Errorf("%q matched", ch)
		}
	}
	if !slices.Equal(inbox.Params(), []string{"uid", "box"}) || inbox.Pattern() != "user:{uid}:inbox.{box}" || inbox.Name() != "inbox" {
		t.Errorf("inbox: %q %q %q", inbox.Params(), inbox.Pattern(), inbox.Name())
	}
}

// Publish encodes the payload, checks it against the schema and hands the event to
// the publisher; a payload the schema refuses never reaches it.
func TestPublish(t *testing.T) {
	orders := NewFamily[order]("orders", "orders.{id}")
	var got []*protocol.Event
	pub := PublisherFunc(func(_ context.Context, ev *protocol.Event) (string, error) {
		got = append(got, ev)
		return "id-1", nil
	})
	ctx := context.Background()
	id, err := orders.Channel("42").Publish(ctx, pub, "shipped", order{ID: "42", Status: "shipped", Items: []item{{SKU: "a", Qty: 1}}})
	if err != nil || id != "id-1" {
		t.Fatalf("Publish = %q, %v", id, err)
	}
	want := `{"id":"42","status":"shipped","items":[{"sku":"a","qty":1}]}`
	if len(got) != 1 || got[0].Channel != "orders.42" || got[0].Type != "shipped" || string(got[0].Data) != want {
		t.Fatalf("published %+v", got)
	}
	for _, tc := range []struct {
		name    string
		payload order
		want    string
	}{
		{"nil slice", order{ID: "1", Status: "created"}, "at /items: got null, want array"},
		{"not in the enum", order{ID: "1", Status: "lost", Items: []item{}}, "at /status"},
	} {
		if _, err := orders.Channel("1").Publish(ctx, pub, "", tc.payload); !errors.Is(err, ErrPayload) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrPayload at %q", tc.name, err, tc.want)
		}
	}
	if len(got) != 1 {
		t.Errorf("%d events reached the publisher, want 1", len(got))
	}
}

func TestFamiliesCheck(t *testing.T) {
	a := NewFamily[order]("a", "orders.{id}")
	for _, tc := range []struct {
		fs   Families
		want string
	}{
		{Families{a, NewFamily[order]("b", "notes.{id}")}, ""},
		{Families{a, NewFamily[order]("a", "notes.{id}")}, "two families named a"},
		{Families{a, NewFamily[order]("b", "orders.{id}")}, "the pattern"},
		{Families{a, NewFamily[order]("b", "orders.x")}, "share channels"},
		{Families{a, NewFamily[order]("b", "orders.{a}:{b}")}, ""}, // a value has no colon
	} {
		err := tc.fs.Check()
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.fs, err, tc.want)
		}
	}
}

// The bundle is JSON Schema of each payload type: required fields are those without
// omitempty, nothing else is allowed, nested types are shared under $defs.
func TestBundle(t *testing.T) {
	type other struct {
		X int `json:"x"`
	}
	fs := Families{NewFamily[order]("orders", "orders.{id}"), NewFamily[item]("items", "items.{sku}"), NewFamily[other]("others", "others")}
	b, err := fs.Bundle()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := b.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Families []BundleFamily `json:"families"`
		Defs     map[string]struct {
			Required             []string       `json:"required"`
			AdditionalProperties *bool          `json:"additionalProperties"`
			Properties           map[string]any `json:"properties"`
		} `json:"$defs"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Families) != 3 || doc.Families[0].Payload != "order" || doc.Families[1].Payload != "item" ||
		doc.Families[0].GoType != "encore.app/realtime/typed.order" || !slices.Equal(doc.Families[2].Params, []string{}) {
		t.Errorf("families %+v", doc.Families)
	}
	o := doc.Defs["order"]
	if !slices.Equal(o.Required, []string{"id", "status", "items"}) || o.AdditionalProperties == nil || *o.AdditionalProperties {
		t.Errorf("order: required %q, additionalProperties %v", o.Required, o.AdditionalProperties)
	}
	if len(doc.Defs) != 3 {
		t.Errorf("defs: %d, want order, item, other", len(doc.Defs))
	}

	// Two different types of one name cannot share the bundle.
	dup := Families{NewFamily[other]("a", "a")}
	{
		type other struct {
			Y string `json:"y"`
		}
		dup = append(dup, NewFamily[other]("b", "b"))
	}
	if _, err := dup.Bundle(); err == nil || !strings.Contains(err.Error(), "other") {
		t.Errorf("two types named other: %v", err)
	}
}

func TestValidator(t *testing.T) {
	orders := NewFamily[order]("orders", "orders.{id}")
	v, err := Families{orders}.Validator()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		channel, data string
		want          string // "" = accepted
	}{
		{"orders.1", `{"id":"1","status":"created","items":[]}`, ""},
		{"orders.1", `{"id":"1","status":"created","items":[],"note":"x"}`, ""},
		{"other", `{"anything":true}`, ""}, // no family: not checked
		{"other", ``, ""},
		{"orders.1", `{"id":"1","status":"created"}`, "missing property 'items'"},
		{"orders.1", `{"id":1,"status":"created","items":[]}`, "at /id: got number, want string"},
		{"orders.1", `{"id":"1","Status":"created","status":"created","items":[]}`, "'Status' not allowed"}, // keys are exact
		{"orders.1", `{"id":"1","status":"created","items":[{"sku":"a"}]}`, "at /items/0: missing property 'qty'"},
		{"orders.1", `{"id":"1","status":"created","items":null}`, "got null"},
		{"orders.1", `[]`, "want object"},
		{"orders.1", ``, "got null"},                                                                        // a typed channel needs its payload
		{"orders.1", `{"id":"1","status":"created","items":[{"sku":"a","qty":1.0}]}`, "cannot unmarshal"},   // an integer to JSON Schema
		{"orders.1", `{"id":"1","status":"created","items":[{"sku":"a","qty":1e400}]}`, "cannot unmarshal"}, // no int holds it
	} {
		err := v.Check(&protocol.Event{Channel: tc.channel, Data: json.RawMessage(tc.data)})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s %s: %v", tc.channel, tc.data, err)
			}
			continue
		}
		if !errors.Is(err, ErrPayload) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "family orders") {
			t.Errorf("%s %s: %v, want ErrPayload containing %q", tc.channel, tc.data, err, tc.want)
		}
	}
}

// FuzzValidatorCheck: published data is untrusted; checking it never panics, and what
// passes on a typed channel decodes into the payload type.
func FuzzValidatorCheck(f *testing.F) {
	orders := NewFamily[order]("orders", "orders.{id}")
	v, err := Families{orders}.Validator()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{`{"id":"1","status":"created","items":[]}`, `{"id":1}`, `[]`, `null`, ``, `{"items":[{"sku":"a","qty":1.5}]}`, `{"id":"1","status":"created","items":[{"sku":"a","qty":2.0}]}`, `"x"`, `{`} {
		f.Add("orders.1", []byte(s))
	}
	f.Fuzz(func(t *testing.T, channel string, data []byte) {
		if err := v.Check(&protocol.Event{Channel: channel, Data: data}); err != nil || !orders.Match(channel) {
			return
		}
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		var o order
		if err := dec.Decode(&o); err != nil {
			t.Fatalf("accepted %s, which does not decode into order: %v", data, err)
		}
	})
}

// The schema and the Go encoder agree on what jsonschema:"nullable" and omitempty
// allow, so Publish takes nil values there.
func TestPublishNilWhereAllowed(t *testing.T) {
	type loose struct {
		Items []item   `json:"items" jsonschema:"nullable"`
		Tags  []string `json:"tags,omitempty"`
		Ref   *item    `json:"ref,omitempty"`
	}
	f := NewFamily[loose]("loose", "loose")
	if _, err := f.Channel().Event("", loose{}); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkValidatorCheck is the cost per event on a typed channel with ValidatePayloads.
func BenchmarkValidatorCheck(b *testing.B) {
	v, err := Families{NewFamily[order]("orders", "orders.{id}")}.Validator()
	if err != nil {
		b.Fatal(err)
	}
	ev := &protocol.Event{Channel: "orders.42", Data: json.RawMessage(`{"id":"42","status":"shipped","items":[{"sku":"a-1","qty":2},{"sku":"b-7","qty":1}],"note":"left at the door"}`)}
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Check(ev); err != nil {
			b.Fatal(err)
		}
	}
}
