//go:build encore

package monitoring

import (
	"context"
	"testing"
	"time"

	"encore.app/realtime"
)

// These tests run under `encore test` only (build tag encore).

// The overview and series endpoints report this process's instance (its fleet record
// reaches the aggregator through the health bucket).
func TestOverviewSeesThisInstance(t *testing.T) {
	ctx := context.Background()
	s, err := realtime.Server()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ov, err := Overview(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ov.Overview.Instances == 1 && len(ov.Overview.InstanceRows) == 1 && ov.Overview.InstanceRows[0].Instance == s.Instance() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("overview %+v", ov.Overview)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := Series(ctx); err != nil {
		t.Fatal(err)
	}
}
