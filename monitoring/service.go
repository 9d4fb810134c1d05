// Service monitoring aggregates the realtime fleet's health: every instance's snapshot
// from the health bucket, merged, with an hour of history and a savings estimate, kept
// by the process's realtime server (encore.app/server). It also sets the Encore metrics
// of the fleet at every sample (metrics.go).
package monitoring

import "encore.app/realtime"

//encore:service
type Service struct{}

//lint:ignore U1000 Encore's generated code calls initService
func initService() (*Service, error) {
	srv, err := realtime.Server()
	if err != nil {
		return nil, err
	}
	srv.OnFleetSample(record)
	return &Service{}, nil
}
