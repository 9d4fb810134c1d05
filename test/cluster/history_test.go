package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"encore.app/internal/testutil"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
	"encore.app/realtime/stream"
)

func historyOn(t *testing.T, in *instance, q url.Values) (int, *protocol.History) {
	t.Helper()
	resp, err := http.Get(in.srv.URL + "/v2/realtime/history?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var h protocol.History
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &h); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	return resp.StatusCode, &h
}

func ids(evs []protocol.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

// History on three instances of a replicated stream: each answers the same events in
// seq order within the limit, whether from its window (inst-0), from the stream
// (inst-1's window holds 5 events: direct gets answered by any replica, checked with
// the leader) or both; the cap on events holds; forbidden channels are refused over
// HTTP and over the frame.
func TestHistoryThreeInstances(t *testing.T) {
	t.Parallel()
	ctx := testutil.ContextWithin(t, testBound)
	cl := startCluster(t, 3)
	windows := []int{10000, 5, 200}
	var ins []*instance
	for i := range 3 {
		ins = append(ins, cl.startInstance(t, fmt.Sprintf("inst-%d", i), i, instanceOpts{engine: stream.Config{
			WindowEvents: windows[i], HistoryMaxEvents: 60, Authenticate: tokenUser, Authorize: privateRule}}))
	}
	pub := newPublisher(t, ins...)
	for i := range 8 {
		evs := append(batch("hist", "h", i*25, 25), batch("hist", "o", i*25, 25)...)
		if err := pub.publish(ctx, evs); err != nil {
			t.Fatal(err)
		}
	}
	want := pub.expected("h") // 200 events in seq order
	last := pub.lastSeq()
	for _, in := range ins {
		testutil.WaitFor(t, in.name+" dispatched everything", func() bool { return in.eng.Snapshot().HeadSeq >= last })
	}
	for _, in := range ins {
		for _, c := range []struct {
			name string
			q    url.Values
			want []protocol.Event
			more bool
		}{
			{"newest", url.Values{"limit": {"50"}}, want[150:], true},
			{"capped at HistoryMaxEvents", url.Values{"limit": {"500"}}, want[140:], true},
			{"before", url.Values{"limit": {"30"}, "before": {fmt.Sprint(want[100].Seq)}}, want[70:100], true},
			{"after", url.Values{"limit": {"20"}, "after": {fmt.Sprint(want[10].Seq)}}, want[11:31], true},
			{"after to the end", url.Values{"limit": {"60"}, "after": {fmt.Sprint(want[150].Seq)}}, want[151:], false},
			{"between", url.Values{"after": {fmt.Sprint(want[3].Seq)}, "before": {fmt.Sprint(want[9].Seq)}}, want[4:9], false},
		} {
			c.q.Set("channel", "h")
			c.q.Set("token", "u1")
			st, h := historyOn(t, in, c.q)
			if st != 200 || !slices.Equal(ids(h.Events), ids(c.want)) || h.More != c.more {
				t.Fatalf("%s %s: status %d, %d events (more=%v, source %s), want %d (more=%v)\n got  %v\n want %v",
					in.name, c.name, st, len(h.Events), h.More, h.Source, len(c.want), c.more, ids(h.Events), ids(c.want))
			}
			for i := 1; i < len(h.Events); i++ {
				if h.Events[i].Seq <= h.Events[i-1].Seq {
					t.Fatalf("%s %s: out of order at %d", in.name, c.name, i)
				}
			}
		}
		if _, h := historyOn(t, in, url.Values{"channel": {"h"}, "limit": {"50"}}); in.name == "inst-1" && h.Source == "memory" {
			t.Fatalf("inst-1 (window 5) answered the newest 50 from memory")
		}
		if st, _ := historyOn(t, in, url.Values{"channel": {"secret.x"}, "token": {"u1"}}); st != 403 {
			t.Fatalf("%s: forbidden channel: %d", in.name, st)
		}
		if st, _ := historyOn(t, in, url.Values{"channel": {"user:42:inbox"}, "token": {"7"}}); st != 403 {
			t.Fatalf("%s: another user's private channel: %d", in.name, st)
		}
	}
	// Over the frame, on the instance that reads the stream.
	conn, err := rtclient.Dial(ctx, ins[1].ws, &rtclient.DialOptions{Token: "7"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if err := conn.RequestHistory(ctx, "h1", protocol.RequestFields{Channel: "h", Limit: 10}); err != nil {
		t.Fatal(err)
	}
	if err := conn.RequestHistory(ctx, "h2", protocol.RequestFields{Channel: "user:42:inbox"}); err != nil {
		t.Fatal(err)
	}
	got := map[string]*rtclient.Frame{}
	for len(got) < 2 {
		f, err := conn.ReadFrame(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == protocol.TypeHistory || f.Type == protocol.TypeError {
			got[f.ID] = f
		}
	}
	if f := got["h1"]; f.Type != protocol.TypeHistory || !slices.Equal(ids(f.Events), ids(want[190:])) || f.Cursor == nil {
		t.Fatalf("history frame: %+v", f)
	}
	if f := got["h2"]; f.Type != protocol.TypeError || f.Code != protocol.CodeForbidden {
		t.Fatalf("forbidden history frame: %+v", f)
	}
}
