package views

import (
	"strings"
	"testing"
)

// The presence panel shows the tracker's figures and the busiest channels; off, it says so.
func TestPresencePanel(t *testing.T) {
	doc := render(t, PresencePanel(Presence{Enabled: true, Instances: []string{"a", "b"}, Channels: 2, Members: 3, Conns: 4,
		Followed: 1, Writes: 12, Top: []PresenceChannel{
			{Channel: "room<1>", LocalUsers: 2, Users: 5, Conns: 7, Known: true, Approximate: true},
			{Channel: "other", LocalUsers: 1},
		}}))
	for id, want := range map[string]string{"presence-instances": "2", "presence-members": "3", "presence-channels": "2",
		"presence-conns": "4", "presence-followed": "1", "presence-writes": "12"} {
		if got := text(t, doc, id); got != want {
			t.Errorf("%s: %q, want %q", id, got, want)
		}
	}
	rows := doc.Find(`[data-testid="presence-row"]`)
	if rows.Length() != 2 || rows.First().AttrOr("data-channel", "") != "room<1>" {
		t.Fatalf("rows: %d", rows.Length())
	}
	if got := text(t, doc, "presence-users"); !strings.HasPrefix(got, "5") || !strings.HasSuffix(got, "~") {
		t.Fatalf("cluster users: %q", got)
	}
	if rows.Last().Find("td.note").Text() != "unavailable" {
		t.Fatalf("a channel whose cluster view failed: %q", rows.Last().Text())
	}
	off := render(t, PresencePanel(Presence{}))
	if text(t, off, "presence-off") == "" {
		t.Fatal("no note when presence is off")
	}
	// The page carries the panel.
	page := render(t, Live(fixture(t)))
	if page.Find(`[data-testid="presence"]`).Length() != 1 {
		t.Fatal("the live region has no presence panel")
	}
}
