package realtime

import (
	"context"

	"encore.dev/beta/auth"
	"encore.dev/beta/errs"
)

// AuthParams: browsers cannot set headers on a WebSocket, so the token comes in the
// query string or a cookie.
type AuthParams struct {
	Token  string `query:"token"`
	Cookie string `cookie:"rt_token"`
}

// UserData is what the stream learns about the caller.
type UserData struct {
	Channels []string `json:"channels"`
}

// AuthHandler validates the token for every auth endpoint of the app.
//
// TODO(security issue): verify a signed token; until then any non-empty token is the
// user ID (development only).
//
//encore:authhandler
func AuthHandler(ctx context.Context, p *AuthParams) (auth.UID, *UserData, error) {
	tok := p.Token
	if tok == "" {
		tok = p.Cookie
	}
	if tok == "" {
		return "", nil, &errs.Error{Code: errs.Unauthenticated, Message: "missing token"}
	}
	return auth.UID(tok), &UserData{}, nil
}
