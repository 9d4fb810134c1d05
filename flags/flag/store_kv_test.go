package flag

import (
	neturl "net/url"
	"strconv"
	"testing"
)

// The NATS key-value store's tests are shared with the Postgres store:
// store_test.go (the Store contract) and store_backend_test.go (instances, restarts,
// records written by an operator).

func mustPort(t *testing.T, url string) int {
	t.Helper()
	u, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
