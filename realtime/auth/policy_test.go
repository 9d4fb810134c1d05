package auth

import (
	"errors"
	"testing"

	"encore.app/realtime/protocol"
)

func TestPolicyAllow(t *testing.T) {
	p := &Policy{PublicPrefixes: []string{"public:", "news."}}
	for _, tc := range []struct {
		user    string
		allowed []string
		channel string
		ok      bool
	}{
		{"", nil, "public:lobby", true},
		{"", nil, "news.eu", true},
		{"", nil, "orders", false},
		{"", nil, "user:42:inbox", false},
		{"42", nil, "user:42:inbox", true},
		{"42", nil, "user:42", true},
		{"42", nil, "user:42.inbox", true},
		{"42", nil, "user:43:inbox", false},
		{"4", nil, "user:42:inbox", false},
		{"42", []string{"*"}, "user:43:inbox", false}, // the token cannot grant another user's private channel
		{"42", []string{"user:43:*"}, "user:43:inbox", false},
		{"42", nil, "orders", false},
		{"42", []string{"orders"}, "orders", true},
		{"42", []string{"orders"}, "orders.eu", false},
		{"42", []string{"orders.*"}, "orders.eu", true},
		{"42", []string{"orders.*"}, "orders", false},
		{"42", []string{"team:7:*"}, "team:7:chat", true},
		{"42", []string{"team:7:*"}, "team:8:chat", false},
		{"42", []string{"*.public"}, "a.b.public", true},
		{"42", []string{"*"}, "anything", true},
	} {
		err := p.Allow(tc.user, tc.allowed, tc.channel)
		if (err == nil) != tc.ok {
			t.Errorf("Allow(%q, %q, %q) = %v, want ok=%v", tc.user, tc.allowed, tc.channel, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrForbidden) {
			t.Errorf("error %v does not wrap ErrForbidden", err)
		}
	}
	var zero Policy
	if zero.Allow("", nil, "public:x") != nil || zero.Allow("", nil, "news.x") == nil {
		t.Error("zero Policy: want the default public prefixes only")
	}
	all := &Policy{PublicPrefixes: []string{"*"}}
	if all.Allow("", nil, "orders") != nil || all.Allow("", nil, "user:1:x") == nil || all.Allow("2", nil, "user:1:x") == nil {
		t.Error(`PublicPrefixes "*": want every channel but private ones public`)
	}
	none := &Policy{PublicPrefixes: []string{}}
	if none.Allow("", nil, "public:x") == nil {
		t.Error("empty PublicPrefixes: want no public channel")
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		p, n string
		ok   bool
	}{
		{"", "", true}, {"", "a", false}, {"*", "", true}, {"a*b*c", "aXbYc", true}, {"a*b*c", "aXbY", false},
		{"**", "x", true}, {"a*", "a", true}, {"*a", "ba", true}, {"*a", "ab", false},
	} {
		if got := Match(tc.p, tc.n); got != tc.ok {
			t.Errorf("Match(%q, %q) = %v", tc.p, tc.n, got)
		}
	}
}

// FuzzAllow: no panic; private channels are never granted to anyone but their owner;
// valid channel names only are considered (the engine validates first).
func FuzzAllow(f *testing.F) {
	f.Add("42", "orders.*", "user:43:inbox")
	f.Add("", "*", "public:x")
	f.Add("7", "team:7:*", "team:7:chat")
	p := &Policy{}
	f.Fuzz(func(t *testing.T, user, pattern, channel string) {
		if protocol.ValidateChannel(channel, 0) != nil {
			return
		}
		err := p.Allow(user, []string{pattern}, channel)
		if owner, ok := PrivateOwner(channel); ok && err == nil && (user == "" || owner != user) {
			t.Fatalf("user %q read private channel %q", user, channel)
		}
		_ = Match(pattern, channel)
	})
}
