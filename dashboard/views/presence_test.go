package views

import (
	"strings"
	"testing"
)

// The presence slot: a lookup form when a source is wired, the members and totals of a
// looked-up channel, its error, and this instance's figures.
func TestPresenceSlot(t *testing.T) {
	m := fixture(t)
	m.BasePath = "/dashboard"
	m.Admin = &Admin{CSRF: "tok", Presence: Presence{Available: true, Channel: "room<1>", Users: 3, Conns: 5, Anonymous: 1,
		Truncated: true, Members: []PresenceMember{{User: "42", Connections: 2}, {User: "7", Connections: 0}},
		Local: PresenceLocal{Enabled: true, Instances: []string{"a", "b"}, Channels: 2, Members: 4, Followed: 1, Writes: 12}}}
	doc := render(t, Page(m))
	if doc.Find(`form[data-testid="presence-form"] input[name="presence"]`).AttrOr("value", "") != "room<1>" {
		t.Error("the lookup form does not keep the channel")
	}
	if got := text(t, doc, "presence-summary"); got != "3 users on 5 connections (1 anonymous); 2 listed" {
		t.Errorf("summary %q", got)
	}
	members := doc.Find(`[data-testid="presence-member"]`)
	if members.Length() != 2 || members.First().AttrOr("data-user", "") != "42" || !strings.Contains(members.First().Text(), "2 connections") {
		t.Errorf("members %q", members.Text())
	}
	if text(t, doc, "presence-local-members") != "4" || text(t, doc, "presence-local-channels") != "2" {
		t.Error("local figures")
	}
	m.Admin.Presence = Presence{Available: true, Channel: "x", Error: "the presence store could not be read: try again"}
	if got := text(t, render(t, Page(m)), "presence-error"); !strings.HasPrefix(got, "the presence store") {
		t.Errorf("error %q", got)
	}
	m.Admin.Presence = Presence{}
	if render(t, Page(m)).Find(`[data-testid="presence-unavailable"]`).Length() != 1 {
		t.Error("no source: the slot says so")
	}
}
