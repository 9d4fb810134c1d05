package rtclient_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
	"encore.app/realtime/stream"
)

// The client takes a server ping's head as its cursor only after the answer to its
// first subscribe, only in its cursor's epoch and only forwards; a ping without a head
// (an older server) changes nothing. A scripted server plays the frames.
func TestClientAdoptsPingCursor(t *testing.T) {
	ctx := testutil.Context(t)
	type step struct {
		frame string
		want  uint64 // the client's cursor seq after the frame
	}
	steps := []step{
		{`{"type":"ping","ts":1,"seq":50,"epoch":"e"}`, 10}, // before the subscribe's answer
		{`{"type":"subscribed","op":"subscribe","epoch":"e","results":[{"channel":"q","ok":true}],"recovery":{"recovered":true,"from":11,"to":50,"source":"memory"}}`, 10},
		{`{"type":"ping","ts":2,"seq":60,"epoch":"other"}`, 10}, // another epoch
		{`{"type":"ping","ts":3}`, 10},                          // an older server
		{`{"type":"ping","ts":4,"seq":60,"epoch":"e"}`, 60},
		{`{"type":"ping","ts":5,"seq":40,"epoch":"e"}`, 60}, // never backwards
		{`{"type":"events","events":[{"id":"x","seq":55,"channel":"q","ts":1}]}`, 60},
	}
	clientCh := make(chan *rtclient.Client, 1)
	done := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done <- func() error {
			ws, err := websocket.Accept(w, r, nil)
			if err != nil {
				return err
			}
			defer ws.CloseNow()
			client := <-clientCh
			write := func(s string) error { return ws.Write(ctx, websocket.MessageText, []byte(s)) }
			if err := write(`{"type":"welcome","version":1,"session":"s","instance":"i","heartbeatMs":25000,"epoch":"e","seq":10,"limits":{}}`); err != nil {
				return err
			}
			for i, st := range steps {
				if err := write(st.frame); err != nil {
					return err
				}
				// A marker ping the client answers: every frame before it was processed.
				marker := int64(1000 + i)
				if err := write(fmt.Sprintf(`{"type":"ping","ts":%d}`, marker)); err != nil {
					return err
				}
				for {
					_, b, err := ws.Read(ctx)
					if err != nil {
						return err
					}
					var f protocol.ClientFrame
					if json.Unmarshal(b, &f) == nil && f.Type == protocol.TypePong && f.TS == marker {
						break
					}
				}
				if got := client.Cursor(); got.Seq != st.want || got.Epoch != "e" {
					return fmt.Errorf("after %s: cursor %+v, want {%d e}", st.frame, got, st.want)
				}
			}
			return ws.Close(websocket.StatusNormalClosure, "")
		}()
	}))
	defer srv.Close()
	client := rtclient.Start(ctx, rtclient.Config{URL: "ws" + strings.TrimPrefix(srv.URL, "http"), Channels: []string{"q"}, Logger: quiet()})
	defer client.Close()
	clientCh <- client
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// A Client on a quiet channel while another channel is busy past retention resumes
// recovered after a drop (the server pings gave it a fresh cursor), and gets the quiet
// channel's next event once. Engine and real NATS, retention by bytes.
func TestClientQuietChannelResumesAfterRetention(t *testing.T) {
	ctx := testutil.Context(t)
	b, err := bus.NewJetStream(ctx, bus.Config{DataDir: t.TempDir(), MaxBytes: 8 << 10, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// Pings every 100 ms (the client answers them; the timeout is generous for a loaded
	// machine); a two-event window, so the instance cannot answer from memory.
	e, err := stream.New(stream.Config{Logger: quiet(), PublisherKey: "k", WindowEvents: 2,
		HeartbeatInterval: 100 * time.Millisecond, HeartbeatTimeout: time.Minute,
		RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond}, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()

	var mu sync.Mutex
	var got []protocol.Event
	var recoveries []protocol.Recovery
	c := rtclient.Start(ctx, rtclient.Config{URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/v2/realtime/stream",
		Channels: []string{"quiet"}, Logger: quiet(), BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		OnEvent:    func(ev protocol.Event) { mu.Lock(); got = append(got, ev); mu.Unlock() },
		OnRecovery: func(r protocol.Recovery) { mu.Lock(); recoveries = append(recoveries, r); mu.Unlock() }})
	defer c.Close()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("client cursor %+v, stats %+v", c.Cursor(), c.Stats())
		}
	})
	waitUntil := func(what string, cond func() bool) { t.Helper(); testutil.WaitFor(t, what, cond) }
	events := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	publish := func(evs ...*protocol.Event) []bus.Ack {
		t.Helper()
		acks, err := e.Publish(ctx, evs)
		if err != nil {
			t.Fatal(err)
		}
		return acks
	}
	pad := `"` + strings.Repeat("x", 2000) + `"`

	waitUntil("connected", func() bool { return c.Stats().Connects > 0 })
	q0 := publish(&protocol.Event{ID: "q-0", Channel: "quiet"})[0].Seq
	waitUntil("the first quiet event", func() bool { return events() == 1 })
	var last uint64
	for i := range 12 {
		last = publish(&protocol.Event{ID: fmt.Sprintf("busy-%d", i), Channel: "busy", Data: []byte(pad)})[0].Seq
	}
	if info, err := b.Info(ctx); err != nil || info.FirstSeq <= q0+1 {
		t.Fatalf("retention kept the stream from %d (%v): the test needs it past %d", info.FirstSeq, err, q0+1)
	}
	waitUntil("a ping's cursor", func() bool { return c.Cursor().Seq >= last })

	c.Drop()
	publish(&protocol.Event{ID: "busy-12", Channel: "busy", Data: []byte(pad)})
	waitUntil("a recovered resume", func() bool { return c.Stats().Recovered >= 1 })
	publish(&protocol.Event{ID: "q-1", Channel: "quiet"})
	waitUntil("the next quiet event", func() bool { return events() == 2 })

	s := c.Stats()
	mu.Lock()
	defer mu.Unlock()
	if s.NotRecovered != 0 || s.Duplicates != 0 || s.Reconnects == 0 {
		t.Fatalf("stats %+v, recoveries %+v: want a reconnect, recovered, no duplicate", s, recoveries)
	}
	if got[0].ID != "q-0" || got[1].ID != "q-1" {
		t.Fatalf("events %+v", got)
	}
}
