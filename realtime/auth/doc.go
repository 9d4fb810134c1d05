// Package auth verifies subscriber tokens and decides which channels a user may read.
//
// A token is a JWT signed with HS256 by one of the configured keys (Keys), chosen by the
// token's "kid" header, so keys can be rotated: several keys verify, one signs. Claims:
// "sub" (the user, required), "exp" (required), optionally "channels" (names or glob
// patterns the user may read). Parsing is strict: only HS256, exp required, a small
// leeway, a bounded token length.
//
// Policy decides channel access: public prefixes are readable by everyone (also
// anonymous dev-mode users), "user:<id>" and "user:<id>:..." / "user:<id>.…" only by
// <id>, anything else only when the token lists it. Authenticator plugs both into the
// stream engine (stream.Config.Authenticate, Authorize, Reauthenticate).
//
// The package is plain Go (no encore.dev import): the standalone server and the Encore
// shell's auth handler use the same code.
package auth
