package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

var frameCases = []struct {
	in   string
	err  error // nil: valid
	typ  string
	nchs int
}{
	{`{"type":"subscribe","channels":["a","b.c"],"cursor":{"seq":3,"epoch":"x1"}}`, nil, TypeSubscribe, 2},
	{`{"type":"unsubscribe","channels":["a"]}`, nil, TypeUnsubscribe, 1},
	{`{"type":"ping","ts":5}`, nil, TypePing, 0},
	{`{"type":"pong","ts":5}`, nil, TypePong, 0},
	{`{"type":"health","health":{"rttMs":3}}`, nil, TypeHealth, 0},
	{`{"type":"auth","token":"t"}`, nil, TypeAuth, 0},
	{` {"type":"ping","extra":1} `, nil, TypePing, 0},
	{``, ErrBadFrame, "", 0},
	{`[]`, ErrBadFrame, "", 0},
	{`{"type":1}`, ErrBadFrame, "", 0},
	{`{}`, ErrBadFrame, "", 0},
	{`{"type":"nope"}`, ErrBadFrame, "", 0},
	{`{"type":"subscribe"}`, ErrBadFrame, "", 0},
	{`{"type":"subscribe","channels":["a"],"cursor":{"seq":1}}`, ErrBadCursor, "", 0},
	{`{"type":"unsubscribe","channels":["a"],"cursor":{"seq":1,"epoch":"e"}}`, ErrBadFrame, "", 0},
	{`{"type":"health"}`, ErrBadFrame, "", 0},
	{`{"type":"auth"}`, ErrBadFrame, "", 0},
	{`{"type":"subscribe","channels":["a","b","c","d"]}`, ErrBadFrame, "", 0}, // over 3 per frame
	{`{"type":"ping","id":"` + strings.Repeat("i", 200) + `"}`, ErrBadFrame, "", 0},
	// A name of any length is the caller's per-channel refusal, never the frame's.
	{`{"type":"subscribe","channels":["a","` + strings.Repeat("n", 600) + `"]}`, nil, TypeSubscribe, 2},
}

func TestDecodeClientFrame(t *testing.T) {
	for _, tc := range frameCases {
		f, err := DecodeClientFrame([]byte(tc.in), 3)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("%s: err %v, want %v", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || f.Type != tc.typ || len(f.Channels) != tc.nchs {
			t.Errorf("%s: %+v %v", tc.in, f, err)
		}
	}
}

func FuzzDecodeClientFrame(f *testing.F) {
	for _, tc := range frameCases {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeClientFrame(b, 100)
		if err == nil {
			if fr == nil || fr.Type == "" {
				t.Fatalf("accepted frame without type: %q", b)
			}
			// An accepted frame re-encodes and decodes to the same type.
			again, err := json.Marshal(fr)
			if err != nil {
				t.Fatal(err)
			}
			if fr2, err := DecodeClientFrame(again, 100); err != nil || fr2.Type != fr.Type {
				t.Fatalf("round trip of %q: %v", b, err)
			}
		}
	})
}

var channelCases = []struct {
	name string
	ok   bool
}{
	{"orders", true}, {"user:42:inbox", true}, {"a.b.c", true}, {"x@y=z_-", true},
	{"", false}, {".a", false}, {"a.", false}, {"a..b", false}, {"a b", false}, {"a*", false},
	{"a>", false}, {"é", false}, {strings.Repeat("a", 129), false}, {strings.Repeat("a", 128), true},
}

func TestValidateChannel(t *testing.T) {
	for _, tc := range channelCases {
		if err := ValidateChannel(tc.name, 128); (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func FuzzValidateChannel(f *testing.F) {
	for _, tc := range channelCases {
		f.Add(tc.name)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if ValidateChannel(s, 128) != nil {
			return
		}
		// Accepted names are safe NATS subject tokens and safe inside JSON without escaping.
		if strings.ContainsAny(s, " *>\t\r\n\"\\") || strings.HasPrefix(s, ".") || strings.Contains(s, "..") {
			t.Fatalf("accepted %q", s)
		}
	})
}

func TestCursorRoundTrip(t *testing.T) {
	for _, c := range []Cursor{{Seq: 0, Epoch: "a"}, {Seq: 18446744073709551615, Epoch: "dn5qd328ode3"}} {
		got, err := ParseCursor(FormatCursor(c))
		if err != nil || got != c {
			t.Errorf("%+v -> %+v %v", c, got, err)
		}
	}
	for _, bad := range []string{"1", ".e", "1.", "x.e", "-1.e", "1.e.f", "1.e f", "99999999999999999999.e"} {
		if _, err := ParseCursor(bad); !errors.Is(err, ErrBadCursor) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"", "1.e", "12.abc", "x.y", "1..", "18446744073709551615.z"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err == nil && s != "" && FormatCursor(c) != s {
			// Leading zeros are the only non-canonical accepted form.
			if c2, err := ParseCursor(FormatCursor(c)); err != nil || c2 != c {
				t.Fatalf("%q parsed to %+v which does not round-trip", s, c)
			}
		}
	})
}

func TestCloseActions(t *testing.T) {
	cases := map[CloseCode]Action{
		CloseNormal: ActionStop, CloseGoingAway: ActionBackoff, CloseAbnormal: ActionBackoff,
		CloseTooBig: ActionStop, CloseInternal: ActionBackoff, CloseReconnect: ActionBackoff,
		CloseHeartbeat: ActionBackoff, CloseSlow: ActionRetryAfter, CloseShutdown: ActionRetryAfter,
		CloseRateLimited: ActionRetryAfter, CloseOverloaded: ActionRetryAfter, CloseTooMany: ActionRetryAfter,
		CloseTokenExpire: ActionRefreshToken, CloseUsePoll: ActionUsePoll, CloseBadRequest: ActionStop,
		CloseUnauthorize: ActionStop, CloseForbidden: ActionStop, 4999: ActionStop, 4050: ActionBackoff,
	}
	for code, want := range cases {
		if got := ActionFor(code); got != want {
			t.Errorf("code %d: %v, want %v", code, got, want)
		}
	}
	if got := RetryHint(CloseReason("slow consumer", 1234)); got != 1234 {
		t.Errorf("retry hint %d", got)
	}
	if got := RetryHint("no hint"); got != 0 {
		t.Errorf("retry hint %d", got)
	}
	if r := CloseReason(strings.Repeat("x", 200), 5); len(r) > 123 {
		t.Errorf("reason of %d bytes", len(r))
	}
}

func TestEncodeEventIsValidJSON(t *testing.T) {
	ev := &Event{ID: "a\"b\\c\x01é", Seq: 7, Channel: "c", Type: "t\u2028\"", Data: json.RawMessage(`{"x":[1,2]}`), TS: 9}
	b := AppendEventsFrame(nil, [][]byte{EncodeEvent(ev), EncodeEvent(&Event{ID: "z", Channel: "c"})})
	var f struct {
		Events []Event `json:"events"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if f.Events[0].ID != ev.ID || f.Events[0].Type != ev.Type || f.Events[0].Seq != 7 || string(f.Events[0].Data) != `{"x":[1,2]}` {
		t.Fatalf("decoded %+v", f.Events[0])
	}
}
