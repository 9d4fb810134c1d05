// Package typed declares channel families that carry one payload type, so that a
// payload is declared once, in Go, and checked everywhere it travels:
//
//	// in the app's channels package (encore.app/realtime/channels):
//	type OrderEvent struct {
//		ID     string `json:"id"`
//		Status string `json:"status"`
//	}
//	var Orders = typed.NewFamily[OrderEvent]("orders", "orders.{id}")
//
//	// in any Go code that publishes (the compiler checks the payload's type):
//	_, err := channels.Orders.Channel("42").Publish(ctx, pub, "shipped", channels.OrderEvent{ID: "42", Status: "shipped"})
//
// A Publisher delivers the event: realtime.TopicPublisher in an Encore service (the
// realtime-events topic), rtclient.Publisher over HTTP, *server.Server in process.
//
// The payload's shape is a JSON Schema reflected from the Go type (Families.Bundle,
// github.com/invopop/jsonschema). go generate writes it to a file from which the
// TypeScript module of the families is generated (payload interfaces and one typed
// helper per family, client/scripts/channels-ts.mjs), and the server can check
// published data against the same schema (Validator; off unless the setting
// ValidatePayloads is on). Publish checks the payload against it before sending, so
// what the typed API sends always matches the TypeScript type.
//
// Patterns are channel names (docs/protocol.md "Channel names") in which {name}
// stands for a parameter. A parameter's value is 1 or more bytes of A-Z a-z 0-9 _ - @ =
// (no dot, no colon), so it can never add a part to the name or change which family
// a channel belongs to.
//
// Families, Channels and Validators are immutable and safe for concurrent use.
package typed
