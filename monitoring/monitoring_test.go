//go:build encore

package monitoring

import (
	"context"
	"testing"

	"encore.app/internal/testutil"
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
	testutil.WaitFor(t, "this instance alone in the overview", func() bool {
		ov, err := Overview(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ov.Overview.Instances == 1 && len(ov.Overview.InstanceRows) == 1 && ov.Overview.InstanceRows[0].Instance == s.Instance()
	})
	if _, err := Series(ctx); err != nil {
		t.Fatal(err)
	}
}
