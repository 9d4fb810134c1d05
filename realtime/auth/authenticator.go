package auth

import (
	"errors"
	"net/http"

	"encore.app/realtime/access"
	"encore.app/realtime/protocol"
)

// TokenCookie is the cookie that carries the token when the query has none.
const TokenCookie = "rt_token"

// TokenFromRequest returns the token of a stream request: the "token" query parameter,
// else the rt_token cookie ("" when neither). Browsers cannot set headers on a
// WebSocket, so no header is read.
func TokenFromRequest(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if c, err := r.Cookie(TokenCookie); err == nil {
		return c.Value
	}
	return ""
}

// Authenticator plugs tokens and the channel policy into the stream engine. Set its
// fields before use; safe for concurrent use afterwards.
type Authenticator struct {
	// Keys verify tokens. Nil: no token is accepted (dev mode with AllowAnonymous).
	Keys *Keys
	// Policy decides channel access.
	Policy Policy
	// AllowAnonymous admits requests without a token as the anonymous user, who reads
	// public channels only (dev mode). Requests with a token are always verified.
	AllowAnonymous bool
}

// Hooks returns the engine hooks: set them as stream.Config.Authenticate, Authorize and
// Reauthenticate.
func (a *Authenticator) Hooks() (authenticate func(*http.Request) (*access.Identity, error),
	authorize func(*access.Identity, string) error,
	reauthenticate func(*access.Identity, string) (*access.Identity, error)) {
	return a.Authenticate, a.Authorize, a.Reauthenticate
}

// Authenticate identifies the caller of a stream request (stream.Config.Authenticate).
// Refusals are *access.AuthError: 401 with close 4200 for an expired token (refresh it,
// then reconnect), 401 with close 4401 for a missing or invalid one (do not retry
// without a new token).
func (a *Authenticator) Authenticate(r *http.Request) (*access.Identity, error) {
	tok := TokenFromRequest(r)
	if tok == "" {
		if a.AllowAnonymous {
			return &access.Identity{}, nil
		}
		return nil, refusal(ErrNoToken)
	}
	id, err := a.verify(tok)
	if err != nil {
		return nil, refusal(err)
	}
	return id, nil
}

// Verify checks a token and returns the identity it carries.
func (a *Authenticator) Verify(token string) (*access.Identity, error) { return a.verify(token) }

func (a *Authenticator) verify(tok string) (*access.Identity, error) {
	if a.Keys == nil {
		return nil, errors.Join(ErrBadToken, errors.New("this server verifies no tokens (dev mode without keys)"))
	}
	c, err := a.Keys.Verify(tok)
	if err != nil {
		return nil, err
	}
	return &access.Identity{UserID: c.Subject, Channels: c.Channels, ExpiresAt: c.ExpiresAt.Time}, nil
}

func refusal(err error) *access.AuthError {
	switch {
	case errors.Is(err, ErrExpired):
		return &access.AuthError{Status: http.StatusUnauthorized, Close: protocol.CloseTokenExpire, Msg: "token expired"}
	case errors.Is(err, ErrNoToken):
		return &access.AuthError{Status: http.StatusUnauthorized, Close: protocol.CloseUnauthorize, Msg: "token required (?token= or rt_token cookie)"}
	default:
		return &access.AuthError{Status: http.StatusUnauthorized, Close: protocol.CloseUnauthorize, Msg: "invalid token"}
	}
}

// Authorize decides whether id may read channel (stream.Config.Authorize).
func (a *Authenticator) Authorize(id *access.Identity, channel string) error {
	if id == nil {
		return a.Policy.Allow("", nil, channel)
	}
	return a.Policy.Allow(id.UserID, id.Channels, channel)
}

// Reauthenticate checks a refreshed token sent in an "auth" frame
// (stream.Config.Reauthenticate). The engine keeps the connection only if the user is
// the same.
func (a *Authenticator) Reauthenticate(_ *access.Identity, token string) (*access.Identity, error) {
	return a.verify(token)
}
