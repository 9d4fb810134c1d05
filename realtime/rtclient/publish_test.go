package rtclient_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
	"encore.app/realtime/stream"
	"encore.app/realtime/typed"
)

type shipment struct {
	Order   string `json:"order"`
	Carrier string `json:"carrier"`
}

var shipments = typed.NewFamily[shipment]("shipments", "shipments.{order}")

// A typed publish over HTTP reaches a subscriber; the server's payload check (on here)
// refuses data of the wrong shape, and a wrong key is refused before it.
func TestPublisherTyped(t *testing.T) {
	ctx := testutil.Context(t)
	b, err := bus.NewJetStream(ctx, bus.Config{DataDir: t.TempDir(), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	v, err := typed.Families{shipments}.Validator()
	if err != nil {
		t.Fatal(err)
	}
	e, err := stream.New(stream.Config{Logger: quiet(), PublisherKey: "k", CheckEvent: v.Check}, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()

	got := make(chan protocol.Event, 4)
	c := rtclient.Start(ctx, rtclient.Config{URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/v2/realtime/stream",
		Channels: []string{"shipments.7"}, Logger: quiet(), OnEvent: func(ev protocol.Event) { got <- ev }})
	defer c.Close()
	testutil.WaitFor(t, "the client's URL subscribe", func() bool { return e.Snapshot().Subscriptions == 1 })

	pub := &rtclient.Publisher{URL: srv.URL + "/v2/realtime/publish", Key: "k"}
	id, err := shipments.Channel("7").Publish(ctx, pub, "shipped", shipment{Order: "7", Carrier: "post"})
	if err != nil || id == "" {
		t.Fatalf("Publish = %q, %v", id, err)
	}
	select {
	case ev := <-got:
		var s shipment
		if err := json.Unmarshal(ev.Data, &s); err != nil || s != (shipment{Order: "7", Carrier: "post"}) || ev.ID != id || ev.Type != "shipped" {
			t.Fatalf("received %+v (%v)", ev, err)
		}
	case <-ctx.Done():
		t.Fatal("no event")
	}

	var pe *rtclient.PublishError
	_, err = pub.Publish(ctx, &protocol.Event{Channel: "shipments.7", Data: json.RawMessage(`{"order":7}`)})
	if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest || !strings.Contains(pe.Message, "at /order") {
		t.Errorf("wrong shape: %v", err)
	}
	wrongKey := &rtclient.Publisher{URL: pub.URL, Key: "nope"}
	if _, err := shipments.Channel("7").Publish(ctx, wrongKey, "", shipment{Order: "7", Carrier: "x"}); !errors.As(err, &pe) || pe.Status != http.StatusUnauthorized {
		t.Errorf("wrong key: %v", err)
	}
	acks, err := pub.Publish(ctx, &protocol.Event{ID: "a", Channel: "other"}, &protocol.Event{ID: "a", Channel: "other"})
	if err != nil || len(acks) != 2 || acks[0].Duplicate || !acks[1].Duplicate {
		t.Errorf("batch: %+v, %v", acks, err)
	}
	if r := e.Snapshot().PublishRefusals; r["payload"] != 1 {
		t.Errorf("refusals %v, want one payload refusal", r)
	}
}
