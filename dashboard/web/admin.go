package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"encore.app/dashboard/views"
	"encore.app/monitoring/inspect"
	"encore.app/realtime/protocol"
)

// Bounds of the admin forms.
const (
	maxFormBytes   = 80 << 10 // a test event's data is bounded by the publish checks too
	maxChannelForm = 1024
)

// inspect runs the connection inspector for query u, bounded by InspectTimeout.
func (h *Handler) inspect(ctx context.Context, u string) *views.Inspect {
	in := &views.Inspect{Query: strings.TrimSpace(u)}
	if h.opts.Admin == nil {
		in.Error = "No admin source on this server."
		return in
	}
	ctx, cancel := context.WithTimeout(ctx, h.opts.InspectTimeout)
	defer cancel()
	res, err := h.opts.Admin.Connections(ctx, inspect.Query{Match: u})
	switch {
	case errors.Is(err, inspect.ErrBadQuery):
		in.Error = "Give a user ID or a session (at most 256 bytes)."
	case err != nil:
		h.opts.Logger.Error("dashboard: inspect", "err", err)
		in.Error = "The instances could not be asked."
	}
	in.Result = res
	return in
}

// publishedFromQuery is the result line after a publish's redirect.
func publishedFromQuery(seq, channel string) *views.Published {
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil || channel == "" || len(channel) > maxChannelForm {
		return nil
	}
	return &views.Published{OK: true, Seq: n, Channel: channel}
}

// redirect answers a form post with 303 to the page (keeping the range).
func redirect(w http.ResponseWriter, r *http.Request, extra url.Values, fragment string) {
	q := url.Values{}
	if rg := r.PostFormValue("range"); rg != "" {
		q.Set("range", views.RangeNamed(rg).Name)
	}
	if u := r.PostFormValue("user"); u != "" && len(u) <= inspect.MaxMatch {
		q.Set("user", u) // the inspector's lookup stays on the page
	}
	for k, v := range extra {
		q[k] = v
	}
	u := basePath(r)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	if fragment != "" {
		u += "#" + fragment
	}
	http.Redirect(w, r, u, http.StatusSeeOther)
}

func postOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return false
	}
	return true
}

// Login checks the admin key of the sign-in form and opens a session (a cookie for the
// dashboard's path), then shows the page again.
func (h *Handler) Login(w http.ResponseWriter, r *http.Request) {
	if !postOnly(w, r) {
		return
	}
	fail := func(status int, msg string) {
		m, err := h.model(r.Context(), r, caller{})
		if err != nil {
			http.Error(w, "dashboard figures unavailable", http.StatusServiceUnavailable)
			return
		}
		m.Login.Error = msg
		h.render(w, r, status, m)
	}
	if !h.auth.enabled() {
		fail(http.StatusForbidden, "This server has no admin key.")
		return
	}
	if !sameSite(r) {
		fail(http.StatusForbidden, "Sign in from this page.")
		return
	}
	if !h.auth.keyOK(r.PostFormValue("key")) {
		if !h.auth.limiter.Allow() {
			w.Header().Set("Retry-After", "10")
			fail(http.StatusTooManyRequests, "Too many failed attempts; wait a few seconds.")
			return
		}
		fail(http.StatusUnauthorized, "Wrong key.")
		return
	}
	h.auth.setCookie(w, r, basePath(r), h.auth.newSession(), int(sessionTTL.Seconds()))
	redirect(w, r, nil, "tools")
}

// Logout ends the session (the cookie) after the form's CSRF check.
func (h *Handler) Logout(w http.ResponseWriter, r *http.Request) {
	if !postOnly(w, r) {
		return
	}
	if c := h.auth.identify(r); c.admin && !h.auth.allowChange(r, c) {
		http.Error(w, "refused: reload the page and sign out again", http.StatusForbidden)
		return
	}
	h.auth.setCookie(w, r, basePath(r), "", -1)
	redirect(w, r, nil, "")
}

// Publish appends one test event from the publish form (channel, type, data as JSON).
// A bearer caller gets JSON back; the form a redirect to the page with the result.
func (h *Handler) Publish(w http.ResponseWriter, r *http.Request) {
	if !postOnly(w, r) {
		return
	}
	c := h.auth.identify(r)
	if !c.admin {
		http.Error(w, "admin key required", http.StatusUnauthorized)
		return
	}
	if !h.auth.allowChange(r, c) {
		http.Error(w, "refused: the form is stale or from another site; reload the page", http.StatusForbidden)
		return
	}
	channel := strings.TrimSpace(r.PostFormValue("channel"))
	ev := &protocol.Event{ID: "console-" + randomID(), Channel: channel, Type: strings.TrimSpace(r.PostFormValue("type"))}
	seq, msg, status := h.publish(r.Context(), ev, strings.TrimSpace(r.PostFormValue("data")))
	if c.bearer {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		if msg != "" {
			_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": ev.ID, "channel": channel, "seq": seq})
		return
	}
	if msg != "" {
		m, err := h.model(r.Context(), r, c)
		if err != nil {
			http.Error(w, "dashboard figures unavailable", http.StatusServiceUnavailable)
			return
		}
		if m.Admin != nil {
			m.Admin.Published = &views.Published{Channel: channel, Error: msg}
		}
		h.render(w, r, status, m)
		return
	}
	redirect(w, r, url.Values{"pub": {strconv.FormatUint(seq, 10)}, "ch": {channel}}, "publish")
}

// publish checks the form's data and publishes: the sequence, or a message for the
// operator and a status.
func (h *Handler) publish(ctx context.Context, ev *protocol.Event, data string) (uint64, string, int) {
	if h.opts.Admin == nil {
		return 0, "No admin source on this server.", http.StatusServiceUnavailable
	}
	if ev.Channel == "" || len(ev.Channel) > maxChannelForm {
		return 0, "Give a channel.", http.StatusBadRequest
	}
	if data != "" {
		if !json.Valid([]byte(data)) {
			return 0, "Data is not JSON.", http.StatusBadRequest
		}
		ev.Data = json.RawMessage(data)
	}
	seq, err := h.opts.Admin.Publish(ctx, ev)
	switch {
	case errors.Is(err, ErrInvalidEvent):
		return 0, "Refused: " + err.Error(), http.StatusBadRequest
	case err != nil:
		h.opts.Logger.Error("dashboard: publish", "err", err)
		return 0, "Publish failed: the bus did not take the event.", http.StatusServiceUnavailable
	}
	return seq, "", http.StatusOK
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
