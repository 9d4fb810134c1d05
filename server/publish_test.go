package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/channels"
	"encore.app/realtime/protocol"
	"encore.app/realtime/typed"
)

// -validate-payloads turns on the typed channels' payload check on both publish paths:
// HTTP and Publish (the Encore topic's); without it any data passes.
func TestValidatePayloads(t *testing.T) {
	ctx := testutil.Context(t)
	bad := `{"channel":"orders.1","data":{"id":"1","status":"lost"}}`
	for _, on := range []bool{false, true} {
		var args []string // dev mode: the publisher key is DevPublisherKey
		if on {
			args = append(args, "-validate-payloads")
		}
		s, hs, _ := startSecured(t, args...)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hs.URL+"/v2/realtime/publish", strings.NewReader(bad))
		req.Header.Set("Authorization", "Bearer "+DevPublisherKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		_, topicErr := s.Publish(ctx, []*protocol.Event{{Channel: "orders.1", Data: json.RawMessage(`{"id":1}`)}})
		refused := s.Engine().Snapshot().PublishRefusals["payload"]
		if on {
			if resp.StatusCode != http.StatusBadRequest || !errors.Is(topicErr, ErrInvalidEvent) || !errors.Is(topicErr, typed.ErrPayload) || refused != 2 {
				t.Errorf("on: HTTP %d, Publish %v, %d refusals; want 400, ErrInvalidEvent wrapping ErrPayload, 2", resp.StatusCode, topicErr, refused)
			}
		} else if resp.StatusCode != http.StatusOK || topicErr != nil || refused != 0 {
			t.Errorf("off: HTTP %d, Publish %v, %d refusals; want 200, nil, 0", resp.StatusCode, topicErr, refused)
		}
		// The server is the typed.Publisher of Go code in its process.
		id, err := channels.Orders.Channel("1").Publish(ctx, s, "paid", channels.OrderEvent{ID: "1", Status: "paid", TotalCents: 1250, At: time.Now()})
		if err != nil || id == "" {
			t.Errorf("typed publish in process: %q, %v", id, err)
		}
	}
}
