// Service dashboard serves the live operations page at /dashboard.
package dashboard

import (
	"encore.dev/shutdown"

	"encore.app/dashboard/web"
)

//encore:service
type Service struct {
	handler *web.Handler
}

// svc lets the package-level raw endpoints reach the handler.
var svc *Service

func initService() (*Service, error) {
	svc = &Service{handler: web.New(monitoringSource{}, web.Options{})}
	return svc, nil
}

// Shutdown ends the open event streams.
func (s *Service) Shutdown(p shutdown.Progress) error {
	s.handler.Close()
	return nil
}
