package realtime

import (
	"context"
	"errors"

	"encore.dev/beta/auth"
	"encore.dev/beta/errs"

	rtauth "encore.app/realtime/auth"
)

// AuthParams: browsers cannot set headers on a WebSocket, so the token comes in the
// query string or a cookie.
type AuthParams struct {
	Token  string `query:"token"`
	Cookie string `cookie:"rt_token"`
}

// UserData is what an auth endpoint learns about the caller from the token.
type UserData struct {
	// Channels the token allows besides public and the user's own private channels.
	Channels []string `json:"channels"`
	// ExpiresAt is the token's expiry, unix milliseconds.
	ExpiresAt int64 `json:"expiresAt"`
}

// AuthHandler verifies subscriber tokens (the TokenKeys secret, docs/security.md) for
// the app's auth endpoints, with the same keys as the stream. The realtime endpoints
// are public and verify the token themselves; an invalid token is Unauthenticated, so
// a public endpoint still runs, as anonymous.
//
//encore:authhandler
func AuthHandler(ctx context.Context, p *AuthParams) (auth.UID, *UserData, error) {
	tok := p.Token
	if tok == "" {
		tok = p.Cookie
	}
	if tok == "" {
		return "", nil, &errs.Error{Code: errs.Unauthenticated, Message: "token required (?token= or rt_token cookie)"}
	}
	s, err := Server()
	if err != nil {
		return "", nil, &errs.Error{Code: errs.Unavailable, Message: "realtime server unavailable"}
	}
	id, err := s.VerifyToken(tok)
	if err != nil {
		msg := "invalid token"
		if errors.Is(err, rtauth.ErrExpired) {
			msg = "token expired"
		}
		return "", nil, &errs.Error{Code: errs.Unauthenticated, Message: msg}
	}
	d := &UserData{Channels: id.Channels}
	if !id.ExpiresAt.IsZero() {
		d.ExpiresAt = id.ExpiresAt.UnixMilli()
	}
	return auth.UID(id.UserID), d, nil
}
