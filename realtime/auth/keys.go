package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors of Verify and Authenticate. Use errors.Is.
var (
	ErrNoToken   = errors.New("no token")
	ErrBadToken  = errors.New("invalid token")
	ErrExpired   = errors.New("token expired")
	ErrForbidden = errors.New("forbidden")
)

const (
	// MinKeyBytes is the shortest accepted HS256 secret (RFC 7518 asks for at least the
	// hash size).
	MinKeyBytes = 32
	// MaxTokenBytes bounds a token before it is parsed.
	MaxTokenBytes = 8 << 10
	// DefaultLeeway tolerates clock skew on exp/nbf/iat.
	DefaultLeeway = 5 * time.Second
	// MaxChannelsClaim bounds the "channels" claim.
	MaxChannelsClaim = 256
)

// Claims are the token's claims: the registered ones (sub, exp, ...) plus the channels
// the user may read (exact names or glob patterns, see Policy).
type Claims struct {
	jwt.RegisteredClaims
	Channels []string `json:"channels,omitempty"`
}

// Keys holds the HS256 secrets by key id. Every key verifies tokens carrying its kid;
// the signing key mints new ones. Immutable after construction; safe for concurrent use.
type Keys struct {
	keys    map[string][]byte
	signKID string
	// Leeway for exp/nbf/iat (DefaultLeeway when zero). Now is the clock (time.Now when
	// nil). Set them before use.
	Leeway time.Duration
	Now    func() time.Time
}

// NewKeys builds a keyring; signKID must be one of keys. Every secret must have at
// least MinKeyBytes bytes and every kid must be 1..64 bytes of [A-Za-z0-9_.-].
func NewKeys(signKID string, keys map[string][]byte) (*Keys, error) {
	if len(keys) == 0 {
		return nil, errors.New("auth: no keys")
	}
	k := &Keys{keys: make(map[string][]byte, len(keys)), signKID: signKID}
	for kid, secret := range keys {
		if err := checkKID(kid); err != nil {
			return nil, err
		}
		if len(secret) < MinKeyBytes {
			return nil, fmt.Errorf("auth: key %q has %d bytes, need at least %d", kid, len(secret), MinKeyBytes)
		}
		k.keys[kid] = append([]byte(nil), secret...)
	}
	if _, ok := k.keys[signKID]; !ok {
		return nil, fmt.Errorf("auth: signing key %q is not among the keys", signKID)
	}
	return k, nil
}

// ParseKeys parses "kid1:secret1,kid2:secret2": the first key signs, all verify.
// Secrets are taken verbatim (use at least 32 random bytes, e.g. `openssl rand -hex 32`).
func ParseKeys(spec string) (*Keys, error) {
	keys := map[string][]byte{}
	first := ""
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		kid, secret, ok := strings.Cut(part, ":")
		if !ok || kid == "" || secret == "" {
			return nil, errors.New("auth: keys: want kid:secret[,kid:secret...]")
		}
		if _, dup := keys[kid]; dup {
			return nil, fmt.Errorf("auth: keys: kid %q given twice", kid)
		}
		if first == "" {
			first = kid
		}
		keys[kid] = []byte(secret)
	}
	if first == "" {
		return nil, errors.New("auth: keys: empty")
	}
	return NewKeys(first, keys)
}

// DevKeys returns a keyring with one random key (kid "dev"), for dev mode: tokens it
// mints are valid until the process ends.
func DevKeys() *Keys {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	k, _ := NewKeys("dev", map[string][]byte{"dev": []byte(hex.EncodeToString(b))})
	return k
}

func checkKID(kid string) error {
	if kid == "" || len(kid) > 64 {
		return fmt.Errorf("auth: kid must be 1..64 bytes")
	}
	for i := 0; i < len(kid); i++ {
		c := kid[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("auth: kid %q: character %q not allowed", kid, c)
		}
	}
	return nil
}

// SigningKID is the kid of the key that mints tokens.
func (k *Keys) SigningKID() string { return k.signKID }

func (k *Keys) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

// Mint signs a token for user, valid for ttl, allowed to read channels (nil: public and
// the user's own private channels only). For tests, dev tooling and apps that issue
// tokens from Go.
func (k *Keys) Mint(user string, ttl time.Duration, channels []string) (string, error) {
	if user == "" {
		return "", errors.New("auth: mint: empty user")
	}
	if ttl <= 0 {
		return "", errors.New("auth: mint: ttl must be positive")
	}
	now := k.now()
	return k.MintClaims(&Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   user,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Channels: channels,
	})
}

// MintClaims signs arbitrary claims with the signing key (kid header set).
func (k *Keys) MintClaims(c *Claims) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, c)
	t.Header["kid"] = k.signKID
	return t.SignedString(k.keys[k.signKID])
}

// Verify checks a token and returns its claims. Errors wrap ErrExpired (refresh the
// token) or ErrBadToken (anything else: malformed, forged, unknown kid, wrong
// algorithm, missing sub or exp, not yet valid).
//
// Parsing is strict, through the library's own options: HS256 only, base64url without
// stray padding bits (WithStrictDecoding), and claims decoded as JSON numbers into a
// map (WithJSONNumber), where the library accepts exp, nbf and iat only as numbers
// ("exp":"1764225600" is refused, which its NumericDate type would parse) and sub only
// as a string; a kid header must be a string.
func (k *Keys) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, ErrNoToken
	}
	if len(token) > MaxTokenBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadToken, MaxTokenBytes)
	}
	leeway := k.Leeway
	if leeway == 0 {
		leeway = DefaultLeeway
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(k.now),
		jwt.WithIssuedAt(),
		jwt.WithJSONNumber(),
		jwt.WithStrictDecoding(),
	)
	mc := jwt.MapClaims{}
	_, err := p.ParseWithClaims(token, mc, func(t *jwt.Token) (any, error) {
		kid := k.signKID // tokens without kid: the signing key only
		if v, ok := t.Header["kid"]; ok {
			s, isString := v.(string)
			if !isString || s == "" {
				return nil, fmt.Errorf("kid header must be a non-empty string, got %v", v)
			}
			kid = s
		}
		secret, ok := k.keys[kid]
		if !ok {
			return nil, fmt.Errorf("unknown key id %q", kid)
		}
		return secret, nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, fmt.Errorf("%w: %v", ErrExpired, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	c, err := claimsOf(mc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	switch {
	case c.Subject == "":
		return nil, fmt.Errorf("%w: no sub claim", ErrBadToken)
	case len(c.Subject) > 256:
		return nil, fmt.Errorf("%w: sub longer than 256 bytes", ErrBadToken)
	case len(c.Channels) > MaxChannelsClaim:
		return nil, fmt.Errorf("%w: more than %d channels", ErrBadToken, MaxChannelsClaim)
	}
	return c, nil
}

// claimsOf converts verified map claims (the library has checked exp, nbf and iat as
// numbers, and sub as a string) into Claims; channels must be a list of strings.
func claimsOf(mc jwt.MapClaims) (*Claims, error) {
	var c Claims
	var err error
	if c.Subject, err = mc.GetSubject(); err != nil {
		return nil, err
	}
	if c.Issuer, err = mc.GetIssuer(); err != nil {
		return nil, err
	}
	if c.Audience, err = mc.GetAudience(); err != nil {
		return nil, err
	}
	if c.ExpiresAt, err = mc.GetExpirationTime(); err != nil {
		return nil, err
	}
	if c.NotBefore, err = mc.GetNotBefore(); err != nil {
		return nil, err
	}
	if c.IssuedAt, err = mc.GetIssuedAt(); err != nil {
		return nil, err
	}
	if v, ok := mc["jti"]; ok {
		s, isString := v.(string)
		if !isString {
			return nil, errors.New("jti must be a string")
		}
		c.ID = s
	}
	if v, ok := mc["channels"]; ok && v != nil {
		list, isList := v.([]any)
		if !isList {
			return nil, errors.New("channels must be a list of strings")
		}
		if len(list) > MaxChannelsClaim {
			return nil, fmt.Errorf("more than %d channels", MaxChannelsClaim)
		}
		c.Channels = make([]string, 0, len(list))
		for _, e := range list {
			s, isString := e.(string)
			if !isString {
				return nil, errors.New("channels must be a list of strings")
			}
			c.Channels = append(c.Channels, s)
		}
	}
	return &c, nil
}
