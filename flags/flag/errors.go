package flag

import "errors"

// Errors returned by stores and the API. Match them with errors.Is; the messages of
// wrapping errors say what was wrong and are safe to show to an administrator.
var (
	// ErrInvalid: a flag name, change or stored record failed validation.
	ErrInvalid = errors.New("invalid")
	// ErrConflict: the change named an expected revision (ifRevision) that is no
	// longer current.
	ErrConflict = errors.New("revision conflict")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("flag store closed")
	// ErrTooManySubscribers: Subscribe was called while MaxSubscribers were open.
	ErrTooManySubscribers = errors.New("too many flag subscribers")
)

var (
	// ErrUnauthenticated: no or wrong admin credential, or no user.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrTooLarge: the request body exceeds MaxChangeBytes (also wraps ErrInvalid).
	ErrTooLarge = errors.New("request body too large")
)
