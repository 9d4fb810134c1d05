package flag

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
)

// UserResolver returns the caller's user ID, or an error to refuse the request with
// 401. An empty ID is allowed (anonymous: no overrides apply, bucket of "").
type UserResolver func(r *http.Request) (userID string, err error)

// Handler serves the flags HTTP API with plain net/http:
//
//	GET /v2/flags                   evaluated flags of the current user
//	GET /v2/flags/admin             flag definitions            (admin)
//	PUT /v2/flags/admin/{name}      change one flag (JSON)      (admin)
//	GET /v2/flags/audit       newest changes, ?limit=N    (admin)
//
// Admin routes need Authorization: Bearer <admin key>. Errors are JSON
// {"code":"...","message":"..."} with a 4xx/5xx status.
type Handler struct {
	api  *API
	user UserResolver
	log  *slog.Logger
	mux  *http.ServeMux
}

// NewHandler returns a Handler. A nil user resolver treats every caller of
// GET /v2/flags as anonymous (user ID "").
func NewHandler(api *API, user UserResolver) *Handler {
	if user == nil {
		user = func(*http.Request) (string, error) { return "", nil }
	}
	h := &Handler{api: api, user: user, log: api.log, mux: http.NewServeMux()}
	h.Register(h.mux)
	return h
}

// Register adds the four routes to mux (for a server that shares one mux).
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v2/flags", h.userFlags)
	mux.HandleFunc("GET /v2/flags/admin", h.admin(h.listFlags))
	mux.HandleFunc("PUT /v2/flags/admin/{name}", h.admin(h.changeFlag))
	mux.HandleFunc("GET /v2/flags/audit", h.admin(h.audit))
}

// ServeHTTP serves the routes listed on Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// UserFlagsResponse is the body of GET /v2/flags.
type UserFlagsResponse struct {
	Flags map[string]bool `json:"flags"`
}

// FlagsResponse is the body of GET /v2/flags/admin.
type FlagsResponse struct {
	Flags []Flag `json:"flags"`
}

// AuditResponse is the body of GET /v2/flags/audit.
type AuditResponse struct {
	Entries []AuditEntry `json:"entries"`
}

// ErrorResponse is the body of every error.
type ErrorResponse struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (h *Handler) userFlags(w http.ResponseWriter, r *http.Request) {
	uid, err := h.user(r)
	if err != nil {
		h.log.Debug("flags: user not resolved", "err", err)
		h.fail(w, r, fmt.Errorf("%w: no valid user credential", ErrUnauthenticated))
		return
	}
	writeJSON(w, http.StatusOK, UserFlagsResponse{Flags: h.api.UserFlags(uid)})
}

// admin wraps an admin route: it authorizes, then calls next with the actor.
func (h *Handler) admin(next func(w http.ResponseWriter, r *http.Request, actor string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		actor, err := h.api.Authorize(r.Header.Get("Authorization"))
		if err != nil {
			h.log.Warn("flags: admin request refused", "path", r.URL.Path, "remote", r.RemoteAddr)
			h.fail(w, r, err)
			return
		}
		next(w, r, actor)
	}
}

func (h *Handler) listFlags(w http.ResponseWriter, r *http.Request, actor string) {
	writeJSON(w, http.StatusOK, FlagsResponse{Flags: h.api.ListFlags()})
}

func (h *Handler) changeFlag(w http.ResponseWriter, r *http.Request, actor string) {
	name := r.PathValue("name")
	if err := ValidateName(name); err != nil {
		h.fail(w, r, err)
		return
	}
	c, err := DecodeChange(http.MaxBytesReader(w, r.Body, MaxChangeBytes+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = fmt.Errorf("%w: %w: change body larger than %d bytes", ErrInvalid, ErrTooLarge, MaxChangeBytes)
		}
		h.fail(w, r, err)
		return
	}
	f, err := h.api.ChangeFlag(r.Context(), actor, name, c)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (h *Handler) audit(w http.ResponseWriter, r *http.Request, actor string) {
	limit := 0
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxAuditLimit {
			h.fail(w, r, fmt.Errorf("%w: limit %q: must be an integer from 1 to %d", ErrInvalid, clip(s), MaxAuditLimit))
			return
		}
		limit = n
	}
	entries, err := h.api.Audit(r.Context(), limit)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, AuditResponse{Entries: entries})
}

// fail writes err as a JSON error; internal errors are logged, not shown.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := StatusOf(err)
	if status >= 500 {
		h.log.Error("flags: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="flags"`)
	}
	writeJSON(w, status, ErrorResponse{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
