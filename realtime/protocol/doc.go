// Package protocol defines the wire protocol of /v2/realtime/stream and /v2/realtime/poll:
// frame types, the event and cursor shapes, channel-name rules, limits and the close-code
// table. docs/protocol.md is its prose twin; the TypeScript client mirrors both.
//
// Everything here is pure data and validation: no I/O, no goroutines. Decoders of
// untrusted input (DecodeClientFrame, ValidateChannel, ParseCursor) never panic and
// return errors wrapping ErrBadFrame, ErrBadChannel or ErrBadCursor.
package protocol
