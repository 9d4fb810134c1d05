package realtime

import (
	"context"
	"errors"
	"sync"

	"encore.dev/beta/auth"
	"encore.dev/beta/errs"
	"encore.dev/rlog"

	rtauth "encore.app/realtime/auth"
)

// AuthParams: browsers cannot set headers on a WebSocket, so the token comes in the
// query string or a cookie.
type AuthParams struct {
	Token  string `query:"token"`
	Cookie string `cookie:"rt_token"`
}

// UserData is what the stream learns about the caller from the token.
type UserData struct {
	// Channels the token allows besides public and the user's own private channels.
	Channels []string `json:"channels"`
	// ExpiresAt is the token's expiry, unix milliseconds: the stream closes with 4200
	// then unless the client sends a fresh token in an "auth" frame.
	ExpiresAt int64 `json:"expiresAt"`
}

// AuthHandler verifies the subscriber token (HS256, keys from the TokenKeys secret,
// docs/security.md) for every auth endpoint of the app.
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
	a, err := authenticator()
	if err != nil {
		return "", nil, &errs.Error{Code: errs.Unauthenticated, Message: "this app verifies no tokens yet: set the TokenKeys secret (docs/security.md)"}
	}
	id, err := a.Verify(tok)
	if err != nil {
		msg := "invalid token"
		if errors.Is(err, rtauth.ErrExpired) {
			msg = "token expired"
		}
		return "", nil, &errs.Error{Code: errs.Unauthenticated, Message: msg}
	}
	return auth.UID(id.UserID), &UserData{Channels: id.Channels, ExpiresAt: id.ExpiresAt.UnixMilli()}, nil
}

var (
	authOnce sync.Once
	authV    *rtauth.Authenticator
	authErr  error
)

// authenticator parses the TokenKeys secret once ("kid:secret,..."; the first signs).
func authenticator() (*rtauth.Authenticator, error) {
	authOnce.Do(func() {
		if secrets.TokenKeys == "" {
			authErr = errors.New("TokenKeys secret not set")
			rlog.Error("realtime: the TokenKeys secret is not set: every stream request is refused. " +
				"Run `encore secret set --type dev,local TokenKeys` with \"kid:<32+ random bytes>\" (docs/security.md).")
			return
		}
		keys, err := rtauth.ParseKeys(secrets.TokenKeys)
		if err != nil {
			authErr = err
			rlog.Error("realtime: TokenKeys secret is invalid", "err", err)
			return
		}
		authV = &rtauth.Authenticator{Keys: keys}
	})
	return authV, authErr
}
