package dashboard

import "net/http"

// Page renders the dashboard (a static snapshot that updates itself when JavaScript runs).
//
//encore:api public raw method=GET path=/dashboard
func Page(w http.ResponseWriter, req *http.Request) {
	svc.handler.Page(w, req)
}

// Events streams the dashboard's live fragments as server-sent events.
//
//encore:api public raw method=GET path=/dashboard/events
func Events(w http.ResponseWriter, req *http.Request) {
	svc.handler.Events(w, req)
}
