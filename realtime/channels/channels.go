// Package channels declares the app's typed channel families: the channels whose
// events carry one payload type, declared once here and checked by the Go compiler
// where services publish, by the TypeScript compiler where browsers subscribe, and
// (with the setting ValidatePayloads) by the server for every published event.
//
// go generate ./realtime/channels writes channels.schema.json (the payload types as
// JSON Schema, encore.app/realtime/typed) and, from it, the TypeScript module of the
// families, client/demo/channels.gen.ts (payload interfaces and one helper per
// family). Both are committed; make test fails when they are stale. The generator needs
// the client's packages (cd client && npm ci).
//
// A new family is a payload struct and a line in Families; see docs/client.md
// "Typed channels".
package channels

//go:generate go run ./gen -o channels.schema.json
//go:generate node ../../client/scripts/channels-ts.mjs channels.schema.json ../../client/demo/channels.gen.ts --import ../src/index.js --source realtime/channels/channels.schema.json

import (
	"time"

	"encore.app/realtime/typed"
)

// Families lists every family of the app, for the generator and the server's payload
// validation. Their channels must not overlap (Families.Check).
var Families = typed.Families{Orders, Notes}

// Orders carries the life of one order, on "orders.{id}" (readers need a token that
// allows orders.*: docs/security.md).
var Orders = typed.NewFamily[OrderEvent]("orders", "orders.{id}")

// OrderEvent is a change in the life of an order.
type OrderEvent struct {
	// ID is the order's ID.
	ID string `json:"id"`
	// Status is the order's status after the change.
	Status string `json:"status" jsonschema:"enum=created,enum=paid,enum=shipped,enum=delivered,enum=cancelled"`
	// TotalCents is the order's total, in cents.
	TotalCents int64 `json:"totalCents"`
	// At is when the change happened.
	At time.Time `json:"at"`
	// Note is an optional remark for the customer.
	Note string `json:"note,omitempty"`
}

// Notes is the demo page's typed channel, "public.notes.{room}": anonymous visitors
// may read it in dev mode (a public prefix).
var Notes = typed.NewFamily[Note]("notes", "public.notes.{room}")

// Note is a short message posted to a room.
type Note struct {
	// Author is who wrote the note.
	Author string `json:"author" jsonschema:"minLength=1,maxLength=64"`
	// Text is the note, plain text.
	Text string `json:"text" jsonschema:"minLength=1,maxLength=500"`
}
