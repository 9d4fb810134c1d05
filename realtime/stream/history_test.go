package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// getHistory calls GET /v2/realtime/history with q; it returns the status and the body
// decoded as a History (or a PollError in err).
func getHistory(t testing.TB, env *testEnv, q url.Values) (int, *protocol.History, *protocol.PollError) {
	t.Helper()
	resp, err := http.Get(env.srv.URL + "/v2/realtime/history?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		var pe protocol.PollError
		if err := json.Unmarshal(b, &pe); err != nil {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
		return resp.StatusCode, nil, &pe
	}
	var h protocol.History
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return resp.StatusCode, &h, nil
}

func histSeqs(h *protocol.History) []uint64 {
	var out []uint64
	for _, ev := range h.Events {
		out = append(out, ev.Seq)
	}
	return out
}

// publishMixed publishes n events, every third on channel ch and the rest on "other",
// and returns the seqs of ch in order and the last seq of all.
func publishMixed(env *testEnv, ch string, from, n int) (seqs []uint64, last uint64) {
	var evs []*protocol.Event
	for i := from; i < from+n; i++ {
		c := "other"
		if i%3 == 0 {
			c = ch
		}
		evs = append(evs, &protocol.Event{ID: fmt.Sprintf("m-%d", i), Channel: c, Data: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))})
	}
	for start := 0; start < len(evs); start += 500 {
		part := evs[start:min(start+500, len(evs))]
		for i, a := range env.publish(part...) {
			if part[i].Channel == ch {
				seqs = append(seqs, a.Seq)
			}
			last = max(last, a.Seq)
		}
	}
	return seqs, last
}

func waitHead(t testing.TB, env *testEnv, seq uint64) {
	t.Helper()
	testutil.WaitFor(t, "engine head", func() bool { return env.eng.headSeq() >= seq })
}

func lastN(s []uint64, n int) []uint64 { return s[max(0, len(s)-n):] }

// The newest events, pages before a seq and ranges after one, answered from the
// window, the bus or both, always in seq order within the limit; the cursor of an
// answer that reaches the head continues the channel.
func TestHistoryWindowAndBus(t *testing.T) {
	ctx := testutil.Context(t)
	dir := t.TempDir()
	// Events before the engine starts are only in the bus.
	pre := newEnv(t, Config{}, bus.Config{DataDir: dir})
	old, _ := publishMixed(pre, "h", 0, 600) // 200 on h
	pre.close()
	env := newEnv(t, Config{WindowEvents: 150}, bus.Config{DataDir: dir})
	fresh, last := publishMixed(env, "h", 600, 300) // 100 on h, 300 events: the window holds the newest 150
	all := append(slices.Clone(old), fresh...)
	// The head the answers' cursors carry: every event published, the last ones (on the
	// other channel) too.
	waitHead(t, env, last)
	head := env.eng.headSeq()

	type tc struct {
		name   string
		q      url.Values
		want   []uint64
		more   bool
		source string
		cursor bool
	}
	for _, c := range []tc{
		{"newest from memory", url.Values{"limit": {"20"}}, lastN(all, 20), true, "memory", true},
		{"newest mixed", url.Values{"limit": {"120"}}, lastN(all, 120), true, "mixed", true},
		{"everything", url.Values{"limit": {"1000"}}, all, false, "mixed", true},
		{"default limit", url.Values{}, lastN(all, 100), true, "mixed", true},
		{"before, from the bus", url.Values{"limit": {"10"}, "before": {fmt.Sprint(old[50])}}, old[40:50], true, "bus", false},
		{"before the first", url.Values{"before": {fmt.Sprint(old[0])}}, nil, false, "memory", false},
		{"after, from the bus", url.Values{"limit": {"10"}, "after": {fmt.Sprint(old[5])}}, old[6:16], true, "bus", false},
		{"after, to the head", url.Values{"limit": {"500"}, "after": {fmt.Sprint(old[150])}}, all[151:], false, "bus", true},
		{"after, from memory", url.Values{"limit": {"5"}, "after": {fmt.Sprint(fresh[80])}}, fresh[81:86], true, "memory", false},
		{"after and before", url.Values{"after": {fmt.Sprint(old[10])}, "before": {fmt.Sprint(old[14])}}, old[11:14], false, "bus", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.q.Set("channel", "h")
			st, h, pe := getHistory(t, env, c.q)
			if st != 200 {
				t.Fatalf("status %d %+v", st, pe)
			}
			if got := histSeqs(h); !slices.Equal(got, c.want) || h.More != c.more || h.Source != c.source {
				t.Fatalf("got %d events %v more=%v source=%s, want %d %v more=%v source=%s",
					len(got), clip(got), h.More, h.Source, len(c.want), clip(c.want), c.more, c.source)
			}
			if (h.Cursor != nil) != c.cursor || (h.Cursor != nil && (h.Cursor.Seq != head || h.Cursor.Epoch != env.eng.Epoch())) {
				t.Fatalf("cursor %+v, want one: %v (head %d)", h.Cursor, c.cursor, head)
			}
			for _, ev := range h.Events {
				if ev.Channel != "h" || !strings.HasPrefix(ev.ID, "m-") || len(ev.Data) == 0 {
					t.Fatalf("event %+v", ev)
				}
			}
		})
	}

	// A subscribe from the newest answer's cursor gets what follows, and nothing twice.
	_, h, _ := getHistory(t, env, url.Values{"channel": {"h"}, "limit": {"5"}})
	conn := env.dial(ctx, nil)
	subscribe(t, ctx, conn, h.Cursor, "h")
	next, _ := publishMixed(env, "h", 900, 3)
	evs, _ := readEvents(t, ctx, conn, 1)
	if evs[0].Seq != next[0] {
		t.Fatalf("after the history cursor: seq %d, want %d", evs[0].Seq, next[0])
	}
}

func clip(s []uint64) []uint64 {
	if len(s) > 8 {
		return append(slices.Clip(s[:4]), s[len(s)-4:]...)
	}
	return s
}

// The byte bound cuts an answer (newest kept for newest-first, oldest for ranges), with
// more set, and never below one event.
func TestHistoryByteBound(t *testing.T) {
	env := newEnv(t, Config{HistoryMaxBytes: 2400}, bus.Config{})
	big := strings.Repeat("x", 900)
	var seqs []uint64
	for i := range 6 {
		a := env.publish(&protocol.Event{ID: fmt.Sprintf("b%d", i), Channel: "b", Data: json.RawMessage(`"` + big + `"`)})
		seqs = append(seqs, a[0].Seq)
	}
	env.publish(&protocol.Event{ID: "huge", Channel: "huge", Data: json.RawMessage(`"` + strings.Repeat("y", 5000) + `"`)})
	waitHead(t, env, seqs[5]+1)
	_, h, _ := getHistory(t, env, url.Values{"channel": {"b"}})
	if got := histSeqs(h); !slices.Equal(got, seqs[4:]) || !h.More {
		t.Fatalf("newest: %v more=%v, want %v more", got, h.More, seqs[4:])
	}
	_, h, _ = getHistory(t, env, url.Values{"channel": {"b"}, "after": {fmt.Sprint(seqs[0])}})
	if got := histSeqs(h); !slices.Equal(got, seqs[1:3]) || !h.More {
		t.Fatalf("range: %v more=%v, want %v more", got, h.More, seqs[1:3])
	}
	_, h, _ = getHistory(t, env, url.Values{"channel": {"huge"}})
	if len(h.Events) != 1 {
		t.Fatalf("an event over the bound: %d events", len(h.Events))
	}
}

// Refusals: a channel the identity may not read, a bad name, another epoch, a bad
// range; over the frame and over HTTP.
func TestHistoryRefusals(t *testing.T) {
	ctx := testutil.Context(t)
	env := newEnv(t, Config{Authorize: func(_ *Identity, ch string) error {
		if strings.HasPrefix(ch, "secret") {
			return errors.New("not yours")
		}
		return nil
	}}, bus.Config{})
	for _, c := range []struct {
		q      url.Values
		status int
		code   string
	}{
		{url.Values{"channel": {"secret.x"}}, 403, protocol.CodeForbidden},
		{url.Values{"channel": {"a b"}}, 400, protocol.CodeBadChannel},
		{url.Values{}, 400, protocol.CodeBadFrame},
		{url.Values{"channel": {"a"}, "epoch": {"other"}}, 400, protocol.CodeBadCursor},
		{url.Values{"channel": {"a"}, "after": {"5"}, "before": {"5"}}, 400, protocol.CodeBadFrame},
		{url.Values{"channel": {"a"}, "limit": {"x"}}, 400, protocol.CodeBadFrame},
	} {
		st, _, pe := getHistory(t, env, c.q)
		if st != c.status || pe == nil || pe.Code != c.code {
			t.Errorf("%v: status %d %+v, want %d %s", c.q, st, pe, c.status, c.code)
		}
	}
	conn := env.dial(ctx, nil)
	for _, f := range []*protocol.ClientFrame{
		{Type: protocol.TypeHistory, ID: "h1", RequestFields: protocol.RequestFields{Channel: "secret.x"}},
		{Type: protocol.TypeHistory, ID: "h2", RequestFields: protocol.RequestFields{Channel: "a", Epoch: "other"}},
	} {
		if err := conn.Send(ctx, f); err != nil {
			t.Fatal(err)
		}
		fr := readUntil(t, ctx, conn, protocol.TypeError)
		if fr.ID != f.ID || (fr.Code != protocol.CodeForbidden && fr.Code != protocol.CodeBadCursor) {
			t.Fatalf("%s: %+v", f.ID, fr)
		}
	}
	// An allowed request over the frame.
	env.publish(&protocol.Event{ID: "one", Channel: "a"})
	testutil.WaitFor(t, "dispatched", func() bool { return env.eng.headSeq() >= 1 })
	if err := conn.Send(ctx, &protocol.ClientFrame{Type: protocol.TypeHistory, ID: "h3", RequestFields: protocol.RequestFields{Channel: "a"}}); err != nil {
		t.Fatal(err)
	}
	fr := readUntil(t, ctx, conn, protocol.TypeHistory)
	if fr.ID != "h3" || len(fr.Events) != 1 || fr.Events[0].ID != "one" || fr.Cursor == nil {
		t.Fatalf("history frame: %+v", fr)
	}
}

// readUntil reads frames until one of type typ.
func readUntil(t testing.TB, ctx context.Context, c *rtclient.Conn, typ string) *rtclient.Frame {
	t.Helper()
	for {
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		if f.Type == typ {
			return f
		}
	}
}
