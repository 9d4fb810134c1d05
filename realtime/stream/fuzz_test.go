package stream

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
)

// FuzzDecodePublish: publish bodies never panic, and whatever is accepted is within the
// limits and valid for the bus.
func FuzzDecodePublish(f *testing.F) {
	env := newEnv(f, Config{MaxPublishEvents: 10, MaxEventData: 256}, bus.Config{})
	for _, s := range []string{
		`{"channel":"orders","type":"shipped","data":{"order":42},"id":"order-42-shipped"}`,
		`{"events":[{"channel":"a"},{"channel":"b","data":[1,2]}]}`,
		`{"events":[]}`, `{"channel":"a","events":[{"channel":"b"}]}`, `{"channel":"a b"}`, `{"channel":"a","id":"x\"y"}`,
		`{"channel":"a","data":` + strings.Repeat("1", 300) + `}`, `{"channel":"a"} {"channel":"b"}`, `[]`, `null`, ``,
		`{"channel":"a","seq":99,"ts":5}`, `{"channel":"a","type":"` + strings.Repeat("t", 65) + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, err := env.eng.DecodePublish(body)
		if err != nil {
			return
		}
		if len(evs) == 0 || len(evs) > 10 {
			t.Fatalf("accepted %d events", len(evs))
		}
		for _, ev := range evs {
			if ev.Seq != 0 || ev.TS != 0 {
				t.Fatalf("client-set seq/ts kept: %+v", ev)
			}
			if err := protocol.ValidateEvent(ev, 128, 256); err != nil {
				t.Fatalf("accepted invalid event %+v: %v", ev, err)
			}
			if len(ev.Data) > 0 && !json.Valid(ev.Data) {
				t.Fatal("invalid data accepted")
			}
		}
	})
}

func TestDecodePublishErrors(t *testing.T) {
	env := newEnv(t, Config{MaxPublishEvents: 2}, bus.Config{})
	for _, tc := range []struct {
		body, want string
	}{
		{`{"events":[{"channel":"a"},{"channel":"b"},{"channel":"c"}]}`, "limit 2"},
		{`{"events":[{"channel":"a"},{"channel":"b b"}]}`, "event 1"},
		{`{"channel":"a"} x`, "trailing"},
		{`{"events":[]}`, "empty"},
	} {
		_, err := env.eng.DecodePublish([]byte(tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.body, err, tc.want)
		}
	}
	if _, err := env.eng.DecodePublish([]byte(`{"events":[{"channel":"a"},{"channel":"b"},{"channel":"c"}]}`)); !errors.Is(err, errTooManyEvents) {
		t.Errorf("too many: %v", err)
	}
}
