// Service monitoring aggregates the realtime fleet's health: every instance's snapshot
// from the health bucket, merged, with an hour of history and a savings estimate.
package monitoring

import (
	"encore.dev/shutdown"

	"encore.app/monitoring/health"
	"encore.app/monitoring/httpapi"
	"encore.app/monitoring/savings"
)

//encore:service
type Service struct {
	bg  *health.Background
	api *httpapi.Handler // builds the same bodies as the standalone server
}

// svc lets the package-level endpoints reach the service.
var svc *Service

func initService() (*Service, error) {
	var agg *health.Aggregator
	agg = health.NewAggregator(health.AggregatorOptions{
		OnSample: func(ov health.Overview) { record(ov, agg.Series()) },
	})
	// TODO(lead): health.AwaitConn waits until the realtime service calls
	// health.ProvideConn(nc) with the process-wide NATS connection (the bus's
	// (*bus.JetStream).Conn()) in its initService. Where monitoring runs without the
	// realtime service in its process, pass a func(ctx) (*nats.Conn, error) that dials NATS.
	bg := health.StartBackground(health.AwaitConn, health.FleetConfig{Use: agg})
	api, err := httpapi.New(agg, savings.DefaultPrices(), nil)
	if err != nil {
		bg.Close()
		return nil, err
	}
	svc = &Service{bg: bg, api: api}
	return svc, nil
}

// Shutdown stops the aggregator and waits for it.
func (s *Service) Shutdown(p shutdown.Progress) error {
	return s.bg.Close()
}
