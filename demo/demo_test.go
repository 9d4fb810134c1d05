//go:build encore

package demo

import (
	"context"
	"encoding/json"
	"testing"

	"encore.dev/beta/errs"
	"encore.dev/et"

	"encore.app/realtime"
	"encore.app/realtime/channels"
)

// These tests run under `encore test` only (build tag encore).

// PostNote publishes a typed note through the realtime-events topic.
func TestPostNotePublishesTypedEvent(t *testing.T) {
	resp, err := PostNote(context.Background(), "lobby", &NoteParams{Author: "ada", Text: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Channel != "public.notes.lobby" || resp.ID == "" {
		t.Fatalf("response %+v", resp)
	}
	msgs := et.Topic(realtime.Events).PublishedMessages()
	if len(msgs) == 0 {
		t.Fatal("nothing published")
	}
	ev := msgs[len(msgs)-1]
	var n channels.Note
	if err := json.Unmarshal(ev.Data, &n); err != nil || ev.Channel != "public.notes.lobby" || ev.Type != "note" || n != (channels.Note{Author: "ada", Text: "hello"}) {
		t.Fatalf("published %+v (%v)", ev, err)
	}
}

// A note the payload's schema refuses (empty text), or a room that is not one channel
// part, is an invalid argument and publishes nothing.
func TestPostNoteRefusesBadNotes(t *testing.T) {
	before := len(et.Topic(realtime.Events).PublishedMessages())
	for _, tc := range []struct {
		room string
		p    NoteParams
	}{
		{"lobby", NoteParams{Author: "ada"}},
		{"lobby", NoteParams{Text: "anonymous"}},
		{"a.b", NoteParams{Author: "ada", Text: "x"}},
	} {
		_, err := PostNote(context.Background(), tc.room, &tc.p)
		if errs.Code(err) != errs.InvalidArgument {
			t.Errorf("%s %+v: %v, want InvalidArgument", tc.room, tc.p, err)
		}
	}
	if n := len(et.Topic(realtime.Events).PublishedMessages()); n != before {
		t.Errorf("%d messages published by refused notes", n-before)
	}
}
