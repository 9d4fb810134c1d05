package bus

import (
	"testing"

	"go.uber.org/goleak"

	"encore.app/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(pgtest.Main(m))
}
