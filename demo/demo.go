// Service demo is an example of an app service that publishes on a typed channel: it
// posts notes to the demo page's channel public.notes.{room} (realtime/channels.Notes)
// through the realtime-events topic, with a payload the compiler checks. Local
// development only: deployed, its endpoint refuses every request.
package demo

import (
	"context"
	"errors"

	"encore.dev"
	"encore.dev/beta/errs"
	"encore.dev/pubsub"

	"encore.app/realtime"
	"encore.app/realtime/channels"
	"encore.app/realtime/typed"
)

// events is this service's right to publish to the realtime topic, as a typed.Publisher.
var events = realtime.TopicPublisher(pubsub.TopicRef[pubsub.Publisher[*realtime.Event]](realtime.Events))

// NoteParams is a note to post.
type NoteParams struct {
	Author string `json:"author"`
	Text   string `json:"text"`
}

// NoteResponse names the published event.
type NoteResponse struct {
	// Channel is where the note went (public.notes.<room>).
	Channel string `json:"channel"`
	// ID is the event's ID (the topic's message ID).
	ID string `json:"id"`
}

// PostNote publishes a note to every page subscribed to public.notes.<room>.
//
//encore:api public method=POST path=/demo/notes/:room
func PostNote(ctx context.Context, room string, p *NoteParams) (*NoteResponse, error) {
	if encore.Meta().Environment.Cloud != encore.CloudLocal {
		return nil, &errs.Error{Code: errs.PermissionDenied, Message: "the demo service works in local development only"}
	}
	ch := channels.Notes.Channel(room)
	id, err := ch.Publish(ctx, events, "note", channels.Note{Author: p.Author, Text: p.Text})
	switch {
	case errors.Is(err, typed.ErrChannel), errors.Is(err, typed.ErrPayload):
		return nil, &errs.Error{Code: errs.InvalidArgument, Message: err.Error()}
	case err != nil:
		return nil, err
	}
	return &NoteResponse{Channel: ch.String(), ID: id}, nil
}
