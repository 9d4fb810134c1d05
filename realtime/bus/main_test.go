package bus

import (
	"testing"

	"go.uber.org/goleak"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Main(m), testutil.LeakOptions()...)
}
