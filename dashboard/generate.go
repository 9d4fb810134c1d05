package dashboard

// Regenerate the templ views (dashboard/views/*_templ.go, committed) with the pinned generator.
//go:generate go tool templ generate
