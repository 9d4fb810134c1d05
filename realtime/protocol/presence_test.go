package protocol

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestDecodePresenceAndHistory(t *testing.T) {
	for _, tc := range []struct {
		in  string
		err error
	}{
		{`{"type":"presence","id":"p1","channel":"room","limit":10}`, nil},
		{`{"type":"history","channel":"orders","limit":100,"before":50}`, nil},
		{`{"type":"history","channel":"orders","after":10,"before":50,"epoch":"e1"}`, nil},
		{`{"type":"subscribe","channels":["a"],"presence":true}`, nil},
		{`{"type":"presence"}`, ErrBadFrame},
		{`{"type":"history","channel":"a","limit":-1}`, ErrBadFrame},
		{`{"type":"history","channel":"a","after":5,"before":5}`, ErrBadFrame},
		{`{"type":"presence","channel":"a","before":5}`, ErrBadFrame},
	} {
		f, err := DecodeClientFrame([]byte(tc.in), 3)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: err %v, want %v", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if f.Type == TypeSubscribe && !f.Presence {
			t.Errorf("%s: presence flag lost", tc.in)
		}
	}
}

// The history frame built from encoded events is the JSON of History.
func TestAppendHistoryFrame(t *testing.T) {
	evs := []Event{{ID: "a", Seq: 3, Channel: "c<>", Data: json.RawMessage(`{"x":1}`), TS: 9}, {ID: "b", Seq: 7, Channel: "c<>", TS: 10}}
	h := History{Type: TypeHistory, ID: "h\"1", Channel: "c<>", Events: evs, More: true, Epoch: "ep", Cursor: &Cursor{Seq: 7, Epoch: "ep"}, Source: "memory"}
	var enc [][]byte
	for i := range evs {
		enc = append(enc, EncodeEvent(&evs[i]))
	}
	got := AppendHistoryFrame(nil, &h, enc)
	var back History
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	want, _ := json.Marshal(h)
	again, _ := json.Marshal(back)
	if string(want) != string(again) {
		t.Fatalf("frame %s\n decodes to %s\n want %s", got, again, want)
	}
}
