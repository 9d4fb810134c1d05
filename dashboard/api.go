package dashboard

import (
	"net/http"

	"encore.app/realtime"
)

// Page renders the dashboard (a complete page that updates itself when JavaScript runs).
//
//encore:api public raw method=GET path=/dashboard
func Page(w http.ResponseWriter, req *http.Request) { realtime.Serve(w, req) }

// Events streams the dashboard's live fragments as server-sent events.
//
//encore:api public raw method=GET path=/dashboard/events
func Events(w http.ResponseWriter, req *http.Request) { realtime.Serve(w, req) }

// Login opens an operator session with the flags admin key (the sign-in form).
//
//encore:api public raw method=POST path=/dashboard/login
func Login(w http.ResponseWriter, req *http.Request) { realtime.Serve(w, req) }

// Logout ends the operator session.
//
//encore:api public raw method=POST path=/dashboard/logout
func Logout(w http.ResponseWriter, req *http.Request) { realtime.Serve(w, req) }

// PublishTest publishes one test event from the console (admin key, CSRF-checked).
//
//encore:api public raw method=POST path=/dashboard/publish
func PublishTest(w http.ResponseWriter, req *http.Request) { realtime.Serve(w, req) }
