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
