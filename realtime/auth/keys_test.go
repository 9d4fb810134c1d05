package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const (
	secretA = "0123456789abcdef0123456789abcdef-A"
	secretB = "0123456789abcdef0123456789abcdef-B"
)

func testKeys(t testing.TB, spec string, now time.Time) *Keys {
	t.Helper()
	k, err := ParseKeys(spec)
	if err != nil {
		t.Fatal(err)
	}
	k.Now = func() time.Time { return now }
	return k
}

func TestParseKeys(t *testing.T) {
	for _, tc := range []struct {
		spec, sign, err string
	}{
		{spec: "k1:" + secretA, sign: "k1"},
		{spec: " k2:" + secretB + " , k1:" + secretA, sign: "k2"},
		{spec: "", err: "empty"},
		{spec: "k1", err: "kid:secret"},
		{spec: "k1:short", err: "at least 32"},
		{spec: "k 1:" + secretA, err: "not allowed"},
		{spec: "k1:" + secretA + ",k1:" + secretB, err: "twice"},
	} {
		k, err := ParseKeys(tc.spec)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseKeys(%q) = %v, want error containing %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil || k.SigningKID() != tc.sign {
			t.Errorf("ParseKeys(%q) = %v, %v; want signing kid %q", tc.spec, k, err, tc.sign)
		}
	}
}

// Every way a token can be wrong is refused with ErrBadToken or ErrExpired.
func TestVerifyRefusesBadTokens(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	k := testKeys(t, "k1:"+secretA, now)
	other := testKeys(t, "k1:"+secretB, now) // same kid, other secret: a forger's key
	good, err := k.Mint("42", time.Hour, []string{"orders"})
	if err != nil {
		t.Fatal(err)
	}
	sign := func(m jwt.SigningMethod, key any, claims jwt.Claims, kid string) string {
		tok := jwt.NewWithClaims(m, claims)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	reg := func(sub string, exp time.Time) jwt.RegisteredClaims {
		c := jwt.RegisteredClaims{Subject: sub}
		if !exp.IsZero() {
			c.ExpiresAt = jwt.NewNumericDate(exp)
		}
		return c
	}
	exp := now.Add(time.Hour).Unix()
	// raw signs a payload as given (claims the Claims type could not express) with the
	// right key, so only the parser's strictness can refuse it.
	raw := func(kid any, claims map[string]any) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(claims))
		if kid != nil {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString([]byte(secretA))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"42"`, `"43"`, 1))) + "." + parts[2]

	for _, tc := range []struct {
		name, token string
		want        error
	}{
		{"empty", "", ErrNoToken},
		{"garbage", "not-a-token", ErrBadToken},
		{"two parts", parts[0] + "." + parts[1], ErrBadToken},
		{"bad base64", parts[0] + ".!!!." + parts[2], ErrBadToken},
		{"tampered payload", tampered, ErrBadToken},
		{"forged with another secret", sign(jwt.SigningMethodHS256, []byte(secretB), &Claims{RegisteredClaims: reg("42", now.Add(time.Hour))}, "k1"), ErrBadToken},
		{"wrong key via Mint", mustMint(t, other, "42"), ErrBadToken},
		{"unknown kid", sign(jwt.SigningMethodHS256, []byte(secretA), &Claims{RegisteredClaims: reg("42", now.Add(time.Hour))}, "k9"), ErrBadToken},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, &Claims{RegisteredClaims: reg("42", now.Add(time.Hour))}, "k1"), ErrBadToken},
		{"alg HS384 with the right secret", sign(jwt.SigningMethodHS384, []byte(secretA), &Claims{RegisteredClaims: reg("42", now.Add(time.Hour))}, "k1"), ErrBadToken},
		{"expired", sign(jwt.SigningMethodHS256, []byte(secretA), &Claims{RegisteredClaims: reg("42", now.Add(-time.Minute))}, "k1"), ErrExpired},
		{"no exp", sign(jwt.SigningMethodHS256, []byte(secretA), &Claims{RegisteredClaims: reg("42", time.Time{})}, "k1"), ErrBadToken},
		{"no sub", sign(jwt.SigningMethodHS256, []byte(secretA), &Claims{RegisteredClaims: reg("", now.Add(time.Hour))}, "k1"), ErrBadToken},
		{"not yet valid", sign(jwt.SigningMethodHS256, []byte(secretA), &Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "42",
			ExpiresAt: jwt.NewNumericDate(now.Add(2 * time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(time.Hour))}}, "k1"), ErrBadToken},
		{"issued in the future", sign(jwt.SigningMethodHS256, []byte(secretA), &Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "42",
			ExpiresAt: jwt.NewNumericDate(now.Add(2 * time.Hour)), IssuedAt: jwt.NewNumericDate(now.Add(time.Hour))}}, "k1"), ErrBadToken},
		{"too long", strings.Repeat("a", MaxTokenBytes+1), ErrBadToken},
		{"exp as a string", raw("k1", map[string]any{"sub": "42", "exp": fmt.Sprint(exp)}), ErrBadToken},
		{"exp null", raw("k1", map[string]any{"sub": "42", "exp": nil}), ErrBadToken},
		{"nbf as a string", raw("k1", map[string]any{"sub": "42", "exp": exp, "nbf": fmt.Sprint(now.Unix())}), ErrBadToken},
		{"iat as a string", raw("k1", map[string]any{"sub": "42", "exp": exp, "iat": fmt.Sprint(now.Unix())}), ErrBadToken},
		{"sub as a number", raw("k1", map[string]any{"sub": 42, "exp": exp}), ErrBadToken},
		{"channels not a list", raw("k1", map[string]any{"sub": "42", "exp": exp, "channels": "orders"}), ErrBadToken},
		{"channels with a number", raw("k1", map[string]any{"sub": "42", "exp": exp, "channels": []any{"a", 7}}), ErrBadToken},
		{"numeric kid", raw(1, map[string]any{"sub": "42", "exp": exp}), ErrBadToken},
		{"empty kid", raw("", map[string]any{"sub": "42", "exp": exp}), ErrBadToken},
		{"kid as a list", raw([]string{"k1"}, map[string]any{"sub": "42", "exp": exp}), ErrBadToken},
		{"too many channels", sign(jwt.SigningMethodHS256, []byte(secretA), &Claims{RegisteredClaims: reg("42", now.Add(time.Hour)),
			Channels: make([]string, MaxChannelsClaim+1)}, "k1"), ErrBadToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := k.Verify(tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %+v, %v; want %v", c, err, tc.want)
			}
		})
	}
	c, err := k.Verify(good)
	if err != nil || c.Subject != "42" || len(c.Channels) != 1 || c.Channels[0] != "orders" {
		t.Fatalf("good token: %+v, %v", c, err)
	}
	// The same claims signed by hand, numbers as numbers: accepted (the strictness
	// refuses types, not tokens from other issuers).
	c, err = k.Verify(raw("k1", map[string]any{"sub": "42", "exp": exp, "iat": now.Unix(), "channels": []string{"a.*"}, "jti": "x"}))
	if err != nil || c.Subject != "42" || c.ExpiresAt.Unix() != exp || c.Channels[0] != "a.*" || c.ID != "x" {
		t.Fatalf("hand-made token: %+v, %v", c, err)
	}
	c, err = k.Verify(raw(nil, map[string]any{"sub": "42", "exp": exp}))
	if err != nil || c.Subject != "42" {
		t.Fatalf("token without kid (the signing key): %+v, %v", c, err)
	}
}

func mustMint(t testing.TB, k *Keys, user string) string {
	t.Helper()
	s, err := k.Mint(user, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Rotation: tokens of the old key keep working while it is listed; new ones are signed
// with the first key; once the old key is removed its tokens are refused.
func TestKeyRotation(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	old := testKeys(t, "2025:"+secretA, now)
	oldTok := mustMint(t, old, "7")
	both := testKeys(t, "2026:"+secretB+",2025:"+secretA, now)
	newTok := mustMint(t, both, "7")
	for _, tok := range []string{oldTok, newTok} {
		if _, err := both.Verify(tok); err != nil {
			t.Fatalf("during rotation: %v", err)
		}
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(newTok, ".")[0])
	if !strings.Contains(string(hdr), `"kid":"2026"`) {
		t.Fatalf("new token header %s, want kid 2026", hdr)
	}
	after := testKeys(t, "2026:"+secretB, now)
	if _, err := after.Verify(oldTok); !errors.Is(err, ErrBadToken) {
		t.Fatalf("old key removed: %v", err)
	}
	if _, err := after.Verify(newTok); err != nil {
		t.Fatal(err)
	}
}

// Leeway: a token expired less than the leeway ago passes, one expired longer fails.
func TestVerifyLeeway(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	k := testKeys(t, "k1:"+secretA, now.Add(-time.Hour))
	tok, _ := k.Mint("1", time.Hour, nil) // expires at now
	k.Now = func() time.Time { return now.Add(DefaultLeeway - time.Second) }
	if _, err := k.Verify(tok); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	k.Now = func() time.Time { return now.Add(DefaultLeeway + time.Second) }
	if _, err := k.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("past leeway: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	k := testKeys(f, "k1:"+secretA, now)
	good := mustMint(f, k, "42")
	for _, s := range []string{good, "", "a.b.c", good + "x", strings.Replace(good, ".", "..", 1),
		"eyJhbGciOiJub25lIn0.eyJzdWIiOiI0MiJ9.", "eyJhbGciOiJIUzI1NiIsImtpZCI6MX0.e30.AAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := k.Verify(tok)
		if err == nil {
			if c.Subject == "" || c.ExpiresAt == nil {
				t.Fatalf("accepted claims without sub or exp: %+v", c)
			}
			// The fuzzer cannot forge HMAC-SHA256: an accepted token carries our
			// signature (base64 may differ in non-canonical trailing bits only).
			if c.Subject != "42" {
				t.Fatalf("accepted a token for %q", c.Subject)
			}
			return
		}
		if !errors.Is(err, ErrBadToken) && !errors.Is(err, ErrExpired) && !errors.Is(err, ErrNoToken) {
			t.Fatalf("unclassified error %v", err)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	k := testKeys(b, "k1:"+secretA, time.Now())
	k.Now = nil
	tok, _ := k.Mint("42", time.Hour, []string{"orders.*", "team:7:*"})
	for b.Loop() {
		if _, err := k.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
