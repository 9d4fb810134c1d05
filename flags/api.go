package flags

import (
	"net/http"

	"encore.app/realtime"
)

// The endpoints hand the request to the process's server (flag.Handler): the same
// JSON, errors and admin key check as cmd/realtimed.

// UserFlags returns every flag evaluated for the caller (token as for the stream;
// anonymous in dev mode).
//
//encore:api public raw method=GET path=/v2/flags
func UserFlags(w http.ResponseWriter, req *http.Request) { realtime.Serve(w, req) }

// UserFlagsPreflight answers the CORS preflight of UserFlags for the allowed origins.
//
//encore:api public raw method=OPTIONS path=/v2/flags
func UserFlagsPreflight(w http.ResponseWriter, req *http.Request) { realtime.Serve(w, req) }

// ListFlags lists the flag definitions (Authorization: Bearer <admin key>).
//
//encore:api public raw method=GET path=/v2/flags/admin
func ListFlags(w http.ResponseWriter, req *http.Request) { realtime.Serve(w, req) }

// ChangeFlag changes one flag fleet-wide (admin; JSON body of changes, docs/flags.md).
//
//encore:api public raw method=PUT path=/v2/flags/admin/:name
func ChangeFlag(w http.ResponseWriter, req *http.Request) { realtime.Serve(w, req) }

// Audit returns the newest flag changes, ?limit=N (admin).
//
//encore:api public raw method=GET path=/v2/flags/audit
func Audit(w http.ResponseWriter, req *http.Request) { realtime.Serve(w, req) }
