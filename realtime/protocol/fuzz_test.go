package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// Seeds shared by the table tests and the fuzzers.
var frameSeeds = []string{
	`{"type":"subscribe","id":"s1","channels":["orders","user:42:inbox"],"cursor":{"seq":1093,"epoch":"lq2k3v9x"}}`,
	`{"type":"unsubscribe","channels":["orders"]}`,
	`{"type":"ping","ts":1764222000000}`,
	`{"type":"pong","ts":1}`,
	`{"type":"health","health":{"rttMs":12.5,"transport":"stream"}}`,
	`{"type":"auth","token":"a.b.c"}`,
	`{"type":"subscribe","channels":["a"],"cursor":{"seq":5}}`,
	`{"type":"unsubscribe","channels":["a"],"cursor":{"seq":1,"epoch":"e"}}`,
	`{"type":"subscribe"}`, `{"type":"health"}`, `{"type":"auth"}`, `{"type":"bogus"}`, `{}`, `[]`, `not json`,
	`{"type":"subscribe","channels":"a"}`, ` {"type":"ping"} `, `{"type":"ping","ts":"x"}`,
}

func TestDecodeClientFrameTable(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{frameSeeds[0], nil}, {frameSeeds[1], nil}, {frameSeeds[2], nil}, {frameSeeds[3], nil}, {frameSeeds[4], nil},
		{frameSeeds[5], nil}, {frameSeeds[6], ErrBadCursor}, {frameSeeds[7], ErrBadFrame}, {frameSeeds[8], ErrBadFrame},
		{frameSeeds[9], ErrBadFrame}, {frameSeeds[10], ErrBadFrame}, {frameSeeds[11], ErrBadFrame}, {frameSeeds[12], ErrBadFrame},
		{frameSeeds[13], ErrBadFrame}, {frameSeeds[14], ErrBadFrame}, {frameSeeds[15], ErrBadFrame}, {frameSeeds[16], nil},
		{frameSeeds[17], ErrBadFrame},
		{`{"type":"subscribe","channels":["` + strings.Repeat("a", 600) + `"]}`, ErrBadChannel},
		{`{"type":"subscribe","channels":["a","b","c"]}`, ErrBadFrame}, // over maxChannels=2
		{`{"type":"ping","id":"` + strings.Repeat("i", 129) + `"}`, ErrBadFrame},
	} {
		_, err := DecodeClientFrame([]byte(tc.in), 2, 128)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%.60s: %v, want %v", tc.in, err, tc.want)
		}
	}
}

func FuzzDecodeClientFrame(f *testing.F) {
	for _, s := range frameSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeClientFrame(b, 100, 128)
		if err != nil {
			if !errors.Is(err, ErrBadFrame) && !errors.Is(err, ErrBadChannel) && !errors.Is(err, ErrBadCursor) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		switch fr.Type {
		case TypeSubscribe, TypeUnsubscribe:
			if len(fr.Channels) == 0 || len(fr.Channels) > 100 {
				t.Fatalf("accepted %d channels", len(fr.Channels))
			}
		case TypePing, TypePong:
		case TypeHealth:
			if fr.Health == nil {
				t.Fatal("health without report")
			}
		case TypeAuth:
			if fr.Token == "" {
				t.Fatal("auth without token")
			}
		default:
			t.Fatalf("accepted type %q", fr.Type)
		}
		if len(fr.ID) > DefaultMaxIDLength {
			t.Fatalf("accepted id of %d bytes", len(fr.ID))
		}
	})
}

var cursorSeeds = []string{"", "0.a", "1093.lq2k3v9x", "18446744073709551615.x", "18446744073709551616.x", "1.", ".e", "1.e.f", "-1.e", "1.e!", "x.e", "1." + strings.Repeat("e", 65)}

func TestParseCursorTable(t *testing.T) {
	valid := map[string]bool{"": true, "0.a": true, "1093.lq2k3v9x": true, "18446744073709551615.x": true}
	for _, s := range cursorSeeds {
		c, err := ParseCursor(s)
		if valid[s] != (err == nil) {
			t.Errorf("ParseCursor(%q) = %+v, %v", s, c, err)
		}
		if err != nil && !errors.Is(err, ErrBadCursor) {
			t.Errorf("ParseCursor(%q): %v does not wrap ErrBadCursor", s, err)
		}
	}
}

func FuzzParseCursor(f *testing.F) {
	for _, s := range cursorSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if !errors.Is(err, ErrBadCursor) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		if s == "" {
			return
		}
		// Round trip: what parses formats back to a cursor that parses the same.
		c2, err := ParseCursor(FormatCursor(c))
		if err != nil || c2 != c {
			t.Fatalf("round trip %q -> %+v -> %+v, %v", s, c, c2, err)
		}
	})
}

var channelSeeds = []string{"orders", "orders.eu", "user:42:inbox", "a_b-c@d=e", "", ".", "a.", ".a", "a..b", "a b", "a*", "a>", "ä", strings.Repeat("x", 129)}

func TestValidateChannelTable(t *testing.T) {
	valid := map[string]bool{"orders": true, "orders.eu": true, "user:42:inbox": true, "a_b-c@d=e": true}
	for _, s := range channelSeeds {
		err := ValidateChannel(s, 128)
		if valid[s] != (err == nil) {
			t.Errorf("ValidateChannel(%q) = %v", s, err)
		}
		if err != nil && !errors.Is(err, ErrBadChannel) {
			t.Errorf("%q: %v does not wrap ErrBadChannel", s, err)
		}
	}
}

func FuzzValidateChannel(f *testing.F) {
	for _, s := range channelSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateChannel(s, 128)
		if err != nil {
			if !errors.Is(err, ErrBadChannel) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		// A valid name is a safe NATS subject suffix and safe in JSON without escaping.
		if len(s) == 0 || len(s) > 128 || strings.ContainsAny(s, " *>\t\r\n\"\\") || strings.Contains(s, "..") ||
			s[0] == '.' || s[len(s)-1] == '.' {
			t.Fatalf("accepted %q", s)
		}
		q, _ := json.Marshal(s)
		if string(q) != `"`+s+`"` {
			t.Fatalf("%q needs JSON escaping", s)
		}
	})
}
