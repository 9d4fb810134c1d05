package stream

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"encore.app/realtime/protocol"
)

// FuzzParsePoll feeds arbitrary query strings to the poll parser: it never panics, and
// what it accepts is within the limits (valid, authorized, deduplicated channels, at
// most MaxSubscriptions; a timeout within MaxPollTimeout).
func FuzzParsePoll(f *testing.F) {
	for _, seed := range []string{
		"channels=a,b&cursor=12.ep&timeout=25",
		"channels=a&timeout=500ms",
		"channels=a,a,a",
		"channels=user:bob:x",
		"channels=a.*&cursor=1",
		"channels=&timeout=-1s",
		"channels=a,b,c,d,e",
		"cursor=18446744073709551616.x&channels=a",
		"channels=%00,%ff&timeout=99999999999",
	} {
		f.Add(seed)
	}
	cfg, err := (&Config{MaxSubscriptions: 4, Authorize: func(id *Identity, ch string) error {
		if strings.HasPrefix(ch, "user:") {
			return errors.New("private")
		}
		return nil
	}}).withDefaults()
	if err != nil {
		f.Fatal(err)
	}
	e := &Engine{cfg: cfg}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r := &http.Request{URL: &url.URL{Path: "/v2/realtime/poll", RawQuery: rawQuery}, Header: http.Header{}}
		req, fail := e.parsePoll(r, &Identity{UserID: "u"})
		if fail != nil {
			if fail.status != 400 && fail.status != 403 {
				t.Fatalf("status %d", fail.status)
			}
			return
		}
		if len(req.channels) == 0 || len(req.channels) > cfg.MaxSubscriptions {
			t.Fatalf("%d channels accepted", len(req.channels))
		}
		seen := map[string]bool{}
		for _, ch := range req.channels {
			if seen[ch] || protocol.ValidateChannel(ch, cfg.MaxChannelLength) != nil || strings.HasPrefix(ch, "user:") {
				t.Fatalf("accepted channel %q", ch)
			}
			seen[ch] = true
		}
		if req.timeout < 0 || req.timeout > cfg.MaxPollTimeout {
			t.Fatalf("timeout %v", req.timeout)
		}
	})
}
