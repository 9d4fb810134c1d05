package rtclient

import "testing"

func TestPollURL(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:4000/v2/realtime/stream":        "http://127.0.0.1:4000/v2/realtime/poll",
		"wss://example.com/v2/realtime/stream?x=1":      "https://example.com/v2/realtime/poll?x=1",
		"http://127.0.0.1:4000/v2/realtime/stream":      "http://127.0.0.1:4000/v2/realtime/poll",
		"https://example.com/prefix/v2/realtime/stream": "https://example.com/prefix/v2/realtime/poll",
		"ws://h/other": "http://h/other",
	} {
		got, err := PollURL(in)
		if err != nil || got != want {
			t.Errorf("PollURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := PollURL("ws://bad host/%zz"); err == nil {
		t.Error("bad URL accepted")
	}
}
