package limits

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"encore.app/realtime/access"
	"encore.app/realtime/protocol"
)

// Who pays for a connect: users pay per user (never per address, so many users
// behind one NAT do not share a budget); anonymous connects pay per address, new
// sessions and resumes from separate budgets, so new sessions cannot starve resumes.
func TestGuardBudgets(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	g := &Guard{
		IPRate:       NewKeyedLimiter(1, 2, 0, clock),
		IPResumeRate: NewKeyedLimiter(1, 3, 0, clock),
		UserRate:     NewKeyedLimiter(1, 2, 0, clock),
	}
	from := func(ip string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/v2/realtime/stream", nil)
		r.RemoteAddr = ip + ":50000"
		return r
	}
	anon := &access.Identity{}
	admit := func(r *http.Request, id *access.Identity, resuming bool) error {
		rel, err := g.Admit(r, id, resuming)
		if rel != nil {
			rel()
		}
		return err
	}
	refusedByRate := func(err error) bool {
		var ae *access.AuthError
		return errors.As(err, &ae) && ae.Close == protocol.CloseRateLimited && ae.Status == http.StatusTooManyRequests && ae.RetryAfter > 0
	}

	// 1,000 users behind one address: each has its own budget.
	for i := range 1000 {
		if err := admit(from("203.0.113.7"), &access.Identity{UserID: fmt.Sprint("u", i)}, false); err != nil {
			t.Fatalf("user %d behind the NAT: %v", i, err)
		}
	}
	// One user's own budget is bounded.
	u := &access.Identity{UserID: "42"}
	for range 2 {
		if err := admit(from("198.51.100.1"), u, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := admit(from("198.51.100.2"), u, true); !refusedByRate(err) {
		t.Fatalf("user over the burst: %v", err)
	}

	// Anonymous: new sessions spend the address's new-session budget...
	for range 2 {
		if err := admit(from("203.0.113.7"), anon, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := admit(from("203.0.113.7"), anon, false); !refusedByRate(err) {
		t.Fatalf("anonymous new session over the burst: %v", err)
	}
	// ...which leaves the resumes of that address alone.
	for i := range 3 {
		if err := admit(from("203.0.113.7"), anon, true); err != nil {
			t.Fatalf("resume %d after new sessions emptied their budget: %v", i, err)
		}
	}
	if err := admit(from("203.0.113.7"), anon, true); !refusedByRate(err) {
		t.Fatalf("resume over its own burst: %v", err)
	}
	if err := admit(from("192.0.2.9"), anon, false); err != nil { // another address
		t.Fatalf("another address: %v", err)
	}
	now = now.Add(time.Second)
	if err := admit(from("203.0.113.7"), anon, true); err != nil {
		t.Fatalf("a second later: %v", err)
	}
}
