package auth

import (
	"fmt"
	"strings"
)

// DefaultPublicPrefixes are the public namespaces when Policy.PublicPrefixes is nil.
var DefaultPublicPrefixes = []string{"public:", "public."}

// PrivatePrefix starts a private channel: "user:<id>", "user:<id>:..." or
// "user:<id>.…" is readable only by the user <id>. User ids that contain ':' or '.'
// cannot own private channels.
const PrivatePrefix = "user:"

// Policy decides which channels a user may read. The zero value uses
// DefaultPublicPrefixes. Immutable after first use; safe for concurrent use.
type Policy struct {
	// PublicPrefixes: channels starting with one of them are readable by everyone,
	// anonymous users included. "*" makes every non-private channel public (handy in
	// development). An empty non-nil slice means no public channels.
	PublicPrefixes []string
}

// Allow reports whether user ("" = anonymous) holding a token that lists allowed may
// read channel. The rules, first match wins:
//
//  1. a private channel (PrivatePrefix) is readable only by its owner, whatever the
//     token lists;
//  2. a channel under a public prefix is readable by everyone;
//  3. otherwise the channel must match an entry of allowed: an exact name or a glob
//     where '*' matches any run of characters ("orders.*", "team:7:*", "*" for every
//     non-private channel).
//
// The error wraps ErrForbidden and says which rule refused.
func (p *Policy) Allow(user string, allowed []string, channel string) error {
	if owner, ok := PrivateOwner(channel); ok {
		if user != "" && owner == user {
			return nil
		}
		return fmt.Errorf("%w: private channel of another user", ErrForbidden)
	}
	prefixes := p.PublicPrefixes
	if prefixes == nil {
		prefixes = DefaultPublicPrefixes
	}
	for _, pre := range prefixes {
		if pre == "*" || pre != "" && strings.HasPrefix(channel, pre) {
			return nil
		}
	}
	if user == "" {
		return fmt.Errorf("%w: anonymous connections read public channels only", ErrForbidden)
	}
	for _, pat := range allowed {
		if Match(pat, channel) {
			return nil
		}
	}
	return fmt.Errorf("%w: not in the token's channels", ErrForbidden)
}

// PrivateOwner returns the owner of a private channel ("user:42:inbox" -> "42").
func PrivateOwner(channel string) (owner string, ok bool) {
	rest, ok := strings.CutPrefix(channel, PrivatePrefix)
	if !ok {
		return "", false
	}
	if i := strings.IndexAny(rest, ":."); i >= 0 {
		rest = rest[:i]
	}
	return rest, true
}

// Match reports whether name matches the glob pattern, where '*' matches any run of
// characters (also none) and every other byte matches itself. Linear in
// len(pattern)*len(name) at worst; no backtracking explosion.
func Match(pattern, name string) bool {
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && pattern[p] == name[n]:
			p++
			n++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
