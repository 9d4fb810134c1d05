package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// The admin panels are opened with the admin key (the flags admin key), either on each
// request (Authorization: Bearer <key>, for scripts) or once through the sign-in form,
// which sets a session cookie for the dashboard's path.
//
// The session is stateless, so every instance behind a load balancer accepts it: the
// cookie is "<expiry>.<nonce>.<mac>", mac = HMAC-SHA256(key, expiry|nonce). Changing
// the key ends every session. The cookie is HttpOnly, SameSite=Strict, Path=<mount>,
// Secure when the request came over TLS.
//
// Forms that change something (publish, sign out) carry a CSRF token derived from the
// session (HMAC-SHA256(key, "csrf"|cookie)) and are refused without it or when the
// browser says the request came from another site (Origin, Sec-Fetch-Site). A request
// authorized by its Authorization header needs no token: browsers never add one by
// themselves. Failed sign-ins are rate limited (loginRate).

const (
	cookieName = "rt_console"
	sessionTTL = 12 * time.Hour
	// loginRate bounds failed sign-ins per process (burst loginBurst): the key is at
	// least 16 bytes, this only slows guessing further.
	loginRate  = rate.Limit(1)
	loginBurst = 10
)

// keyAuth checks admin requests. Immutable after construction but for the limiter,
// which is safe for concurrent use.
type keyAuth struct {
	key     []byte // the admin key; empty: admin refused
	now     func() time.Time
	limiter *rate.Limiter
}

func newKeyAuth(key string, now func() time.Time) *keyAuth {
	return &keyAuth{key: []byte(key), now: now, limiter: rate.NewLimiter(loginRate, loginBurst)}
}

func (a *keyAuth) enabled() bool { return len(a.key) > 0 }

func (a *keyAuth) mac(parts ...string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(strings.Join(parts, "|")))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// keyOK compares a presented key with the admin key in constant time.
func (a *keyAuth) keyOK(k string) bool {
	return a.enabled() && subtle.ConstantTimeCompare([]byte(k), a.key) == 1
}

// caller is who asks: via a bearer key, a session cookie, or nobody.
type caller struct {
	admin   bool
	bearer  bool   // authorized by the Authorization header
	session string // the session cookie's value (for the CSRF token)
}

// identify reads the Authorization header and the session cookie.
func (a *keyAuth) identify(r *http.Request) caller {
	if !a.enabled() {
		return caller{}
	}
	if h := r.Header.Get("Authorization"); h != "" {
		k, ok := strings.CutPrefix(h, "Bearer ")
		return caller{admin: ok && a.keyOK(strings.TrimSpace(k)), bearer: true}
	}
	c, err := r.Cookie(cookieName)
	if err != nil || !a.sessionOK(c.Value) {
		return caller{}
	}
	return caller{admin: true, session: c.Value}
}

func (a *keyAuth) sessionOK(v string) bool {
	exp, rest, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	nonce, mac, ok := strings.Cut(rest, ".")
	if !ok {
		return false
	}
	t, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || a.now().Unix() >= t {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(a.mac("session", exp, nonce)))
}

// newSession returns a fresh session cookie value.
func (a *keyAuth) newSession() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	exp := strconv.FormatInt(a.now().Add(sessionTTL).Unix(), 10)
	nonce := hex.EncodeToString(b[:])
	return exp + "." + nonce + "." + a.mac("session", exp, nonce)
}

// csrf is the token the forms of session carry.
func (a *keyAuth) csrf(session string) string {
	if session == "" {
		return ""
	}
	return a.mac("csrf", session)
}

// allowChange decides whether a state-changing request of c may proceed: a bearer
// caller always; a session caller with the right token from the same site.
func (a *keyAuth) allowChange(r *http.Request, c caller) bool {
	if !c.admin {
		return false
	}
	if c.bearer {
		return true
	}
	if !sameSite(r) {
		return false
	}
	tok := r.PostFormValue("csrf")
	return tok != "" && hmac.Equal([]byte(tok), []byte(a.csrf(c.session)))
}

// sameSite reports whether the browser says the request comes from this site. Browsers
// that send Sec-Fetch-Site are believed (same-origin, or none: typed or bookmarked);
// without it, an Origin (when sent) must name this request's host, as the client or a
// proxy in front (X-Forwarded-Host) saw it.
func sameSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin", "none":
		return true
	case "":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	if err != nil {
		return false
	}
	return u.Host == r.Host || (r.Header.Get("X-Forwarded-Host") != "" && u.Host == r.Header.Get("X-Forwarded-Host"))
}

func (a *keyAuth) setCookie(w http.ResponseWriter, r *http.Request, path, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
	})
}
