package bus

import (
	"testing"

	"go.uber.org/goleak"

	"encore.app/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, testutil.LeakOptions()...)
}
