package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/goleak"

	"encore.app/internal/testutil"
	"encore.app/monitoring/health"
	"encore.app/monitoring/savings"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testutil.LeakOptions()...) }

func TestEndpoints(t *testing.T) {
	now := time.Unix(1_764_000_000, 0)
	clock := func() time.Time { return now }
	agg := health.NewAggregator(health.AggregatorOptions{Now: clock})
	if err := agg.Put(health.InstanceSnapshot{Instance: "a", Time: now.UnixMilli(), ActiveConnections: 9}); err != nil {
		t.Fatal(err)
	}
	agg.Sample()
	h, err := New(agg, savings.DefaultPrices(), nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	h.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	var ov OverviewBody
	getJSON(t, srv.URL+OverviewPath, &ov)
	if ov.Overview.Totals.ActiveConnections != 9 || !ov.Savings.Measured || ov.Savings.Usage.ConnectionSeconds != 45 {
		t.Fatalf("overview %+v savings usage %+v", ov.Overview.Totals, ov.Savings.Usage)
	}
	var se SeriesBody
	getJSON(t, srv.URL+SeriesPath, &se)
	if len(se.Series.Points) != 1 || se.Series.Points[0].Connections != 9 || se.Series.StepMs != 5000 {
		t.Fatalf("series %+v", se.Series)
	}
	resp, err := http.Post(srv.URL+SeriesPath, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST status %d", resp.StatusCode)
	}
	bad := savings.DefaultPrices()
	bad.DaysPerMonth = -1
	if _, err := New(agg, bad, nil); err == nil {
		t.Fatal("bad prices accepted")
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s: status %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}
