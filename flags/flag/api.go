package flag

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

// AdminKey is one admin credential. Name is recorded as the actor of its changes.
type AdminKey struct {
	Name string
	Key  string
}

// MinAdminKeyLen is the shortest admin key accepted by NewAPI.
const MinAdminKeyLen = 16

// API holds the operations behind the HTTP handlers, for callers (the Encore service
// root) that expose them in another way. Safe for concurrent use.
type API struct {
	store Store
	keys  []adminKey
	log   *slog.Logger
}

type adminKey struct {
	name string
	sum  [sha256.Size]byte
}

// NewAPI checks the admin keys (at least one; each named, unique, at least
// MinAdminKeyLen bytes) and returns an API over store.
func NewAPI(store Store, keys []AdminKey, log *slog.Logger) (*API, error) {
	if store == nil {
		return nil, errors.New("flags api: nil store")
	}
	if len(keys) == 0 {
		return nil, errors.New("flags api: no admin key configured")
	}
	if log == nil {
		log = slog.Default()
	}
	a := &API{store: store, log: log}
	seen := map[string]bool{}
	for _, k := range keys {
		switch {
		case k.Name == "" || len(k.Name) > MaxActorLen:
			return nil, fmt.Errorf("flags api: admin key name must be 1-%d bytes", MaxActorLen)
		case seen[k.Name]:
			return nil, fmt.Errorf("flags api: duplicate admin key name %q", k.Name)
		case len(k.Key) < MinAdminKeyLen:
			return nil, fmt.Errorf("flags api: admin key %q shorter than %d bytes", k.Name, MinAdminKeyLen)
		}
		seen[k.Name] = true
		a.keys = append(a.keys, adminKey{name: k.Name, sum: sha256.Sum256([]byte(k.Key))})
	}
	return a, nil
}

// Store returns the store the API serves.
func (a *API) Store() Store { return a.store }

// Authorize checks an Authorization header value ("Bearer <admin key>") and returns
// the matching key's name. Comparison is constant-time (over SHA-256 digests, so the
// key length does not leak either) and visits every key. Errors wrap
// ErrUnauthenticated.
func (a *API) Authorize(authorization string) (actor string, err error) {
	scheme, token, ok := strings.Cut(authorization, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", fmt.Errorf("%w: send Authorization: Bearer <admin key>", ErrUnauthenticated)
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	match := -1
	for i, k := range a.keys {
		if subtle.ConstantTimeCompare(sum[:], k.sum[:]) == 1 {
			match = i
		}
	}
	if match < 0 {
		return "", fmt.Errorf("%w: admin key not recognised", ErrUnauthenticated)
	}
	return a.keys[match].name, nil
}

// UserFlags returns every flag evaluated for userID.
func (a *API) UserFlags(userID string) map[string]bool {
	return a.store.Evaluator().EvaluateAll(userID)
}

// ListFlags returns every flag definition, sorted by name.
func (a *API) ListFlags() []Flag {
	return a.store.Evaluator().Flags()
}

// ChangeFlag applies c to flag name as actor (from Authorize).
func (a *API) ChangeFlag(ctx context.Context, actor, name string, c Change) (Flag, error) {
	return a.store.Change(ctx, name, c, actor)
}

// Audit returns the newest audit entries (limit 0: DefaultAuditLimit; at most
// MaxAuditLimit).
func (a *API) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	if limit < 0 || limit > MaxAuditLimit {
		return nil, fmt.Errorf("%w: limit %d: must be 1-%d", ErrInvalid, limit, MaxAuditLimit)
	}
	return a.store.Audit(ctx, limit)
}

// Error codes in JSON error bodies, and what they mean for the caller.
const (
	CodeInvalid         = "invalid_argument" // fix the request
	CodeTooLarge        = "too_large"        // body above MaxChangeBytes
	CodeConflict        = "conflict"         // ifRevision is stale: re-read and retry
	CodeUnauthenticated = "unauthenticated"  // missing or wrong credential
	CodeUnavailable     = "unavailable"      // store closed or NATS unreachable: retry
	CodeInternal        = "internal"         // logged on the server
)

// StatusOf maps an error from this package to an HTTP status, an error code and a
// message safe to return (internal errors get a generic message).
func StatusOf(err error) (status int, code, message string) {
	switch {
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge, CodeTooLarge, err.Error()
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest, CodeInvalid, err.Error()
	case errors.Is(err, ErrConflict):
		return http.StatusConflict, CodeConflict, err.Error()
	case errors.Is(err, ErrUnauthenticated):
		return http.StatusUnauthorized, CodeUnauthenticated, err.Error()
	case errors.Is(err, ErrClosed), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, CodeUnavailable, "flag store unavailable, retry"
	default:
		return http.StatusInternalServerError, CodeInternal, "internal error"
	}
}
