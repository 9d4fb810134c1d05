package realtime

import (
	"context"
	"encoding/json"
	"errors"

	"encore.dev"
	"encore.dev/pubsub"
	"encore.dev/rlog"

	"encore.app/realtime/protocol"
	"encore.app/realtime/typed"
	"encore.app/server"
)

// Event is what other services publish to reach browsers.
type Event struct {
	// Channel the event goes to (docs/protocol.md "Channel names").
	Channel string `json:"channel"`
	// Type is free text for the client, optional.
	Type string `json:"type"`
	// Data is free-form JSON, delivered verbatim.
	Data json.RawMessage `json:"data"`
}

// Events is the topic every producer publishes to. At-least-once: the bus appends a
// redelivered message once, by its Encore message ID.
var Events = pubsub.NewTopic[*Event]("realtime-events", pubsub.TopicConfig{
	DeliveryGuarantee: pubsub.AtLeastOnce,
})

// TopicPublisher makes a service's reference to Events the typed.Publisher of typed
// channels (encore.app/realtime/channels), so that the compiler checks the payload:
//
//	var events = realtime.TopicPublisher(pubsub.TopicRef[pubsub.Publisher[*realtime.Event]](realtime.Events))
//
//	_, err := channels.Orders.Channel(id).Publish(ctx, events, "shipped", channels.OrderEvent{...})
//
// Call pubsub.TopicRef at package level of the publishing service: Encore grants that
// service the right to publish. The topic assigns message IDs, so an event with an ID
// of its own is refused (publish those over HTTP).
func TopicPublisher(ref pubsub.Publisher[*Event]) typed.Publisher {
	return typed.PublisherFunc(func(ctx context.Context, ev *protocol.Event) (string, error) {
		if ev.ID != "" {
			return "", errors.New("realtime: the realtime-events topic assigns message IDs: publish an event with its own ID over HTTP")
		}
		return ref.Publish(ctx, &Event{Channel: ev.Channel, Type: ev.Type, Data: ev.Data})
	})
}

// The one static subscription: every message goes to one instance, which appends it to
// the bus; the bus reaches every instance.
var _ = pubsub.NewSubscription(Events, "realtime-fanout", pubsub.SubscriptionConfig[*Event]{
	Handler: appendToBus,
})

// appendToBus checks the event with the rules of POST /v2/realtime/publish and appends
// it. A bad event is dropped (logged): retrying cannot fix it. A bus error is
// returned, so Encore redelivers.
func appendToBus(ctx context.Context, ev *Event) error {
	var id string
	if m := encore.CurrentRequest().Message; m != nil { // nil when called directly in tests
		id = m.ID
	}
	s, err := Server()
	if err != nil {
		return err
	}
	_, err = s.Publish(ctx, []*protocol.Event{{ID: id, Channel: ev.Channel, Type: ev.Type, Data: ev.Data}})
	if errors.Is(err, server.ErrInvalidEvent) {
		rlog.Error("realtime-events: event dropped", "id", id, "channel", ev.Channel, "err", err)
		return nil
	}
	return err
}
