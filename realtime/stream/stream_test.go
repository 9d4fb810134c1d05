package stream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// 1,000 concurrent clients on a few channels all receive every one of 1,000 published
// events of their channel, in order, none twice.
func TestFanoutThousandClients(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	// The test's raw clients do not answer pings: keep heartbeats out of the way even
	// on a loaded machine.
	env := newEnv(t, Config{HeartbeatInterval: 10 * time.Minute}, bus.Config{})
	ctx := testutil.ContextWithin(t, 5*time.Minute) // a guard against a hung test, not a speed budget
	const clients, channels, events = 1000, 4, 1000
	chName := func(i int) string { return fmt.Sprintf("room.%d", i%channels) }

	conns := make([]*rtclient.Conn, clients)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 50)
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := rtclient.Dial(ctx, env.url, &rtclient.DialOptions{Channels: []string{chName(i)}})
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
			f, err := c.ReadFrame(ctx)
			if err != nil || f.Type != protocol.TypeSubscribed || !f.Results[0].OK {
				errs <- fmt.Errorf("client %d: subscribe answer %+v %v", i, f, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	defer func() {
		for _, c := range conns {
			c.CloseNow()
		}
	}()
	if got := env.eng.Snapshot().ActiveConnections; got != clients {
		t.Fatalf("active connections %d, want %d", got, clients)
	}

	// Publish 1,000 events round-robin over the channels while clients read.
	results := make([][]protocol.Event, clients)
	perChannel := events / channels
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := conns[i]
			for len(results[i]) < perChannel {
				f, err := c.ReadFrame(ctx)
				if err != nil {
					t.Errorf("client %d after %d events: %v", i, len(results[i]), err)
					return
				}
				if f.Type == protocol.TypePing {
					continue
				}
				results[i] = append(results[i], f.Events...)
			}
		}()
	}
	var evs []*protocol.Event
	for n := range events {
		ch := chName(n)
		evs = append(evs, &protocol.Event{ID: fmt.Sprintf("%s-%d", ch, n/channels), Channel: ch, Data: []byte(`{"v":1}`)})
	}
	for start := 0; start < events; start += 100 {
		env.publish(evs[start : start+100]...)
	}
	wg.Wait()
	for i := range clients {
		checkSequence(t, results[i], chName(i), 0, perChannel)
	}
	s := env.eng.Snapshot()
	if s.EventsDelivered != uint64(clients*perChannel) {
		t.Errorf("eventsDelivered %d, want %d", s.EventsDelivered, clients*perChannel)
	}
	for reason, n := range s.Drops {
		if n != 0 {
			t.Errorf("drops[%s] = %d", reason, n)
		}
	}
	t.Logf("frames %d, events/frame %.1f, write p99 %.1f ms", s.EventFrames, s.EventsPerFrame, s.WriteLatencyMs.P99)
}

// An idle connection gets its first event at once; a burst is coalesced into frames of
// at most BatchMaxEvents, and the rest waits for the window.
func TestBatchingIdleFirstThenCoalesce(t *testing.T) {
	env := newEnv(t, Config{BatchWindow: time.Hour, BatchMaxEvents: 100}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)
	subscribe(t, ctx, c, nil, "b")

	env.publishN("b", 0, 1)
	evs, frames := readEvents(t, ctx, c, 1)
	if len(frames) != 1 || len(evs) != 1 {
		t.Fatalf("first event: %d frames, %d events", len(frames), len(evs))
	}

	env.publishN("b", 1, 250) // one bus batch
	evs, frames = readEvents(t, ctx, c, 200)
	if len(frames) != 2 || len(frames[0].Events) != 100 || len(frames[1].Events) != 100 {
		t.Fatalf("burst frames: %d frames of %v", len(frames), frameSizes(frames))
	}
	checkSequence(t, evs, "b", 1, 200)
	// The last 50 wait for the (one hour) window: nothing more arrives now.
	short, stop := context.WithTimeout(ctx, 300*time.Millisecond)
	defer stop()
	if f, err := c.ReadFrame(short); err == nil {
		t.Fatalf("frame of %d events arrived inside the window", len(f.Events))
	}
}

// With the default settings a burst goes out as it arrives (an instance with CPU to
// spare opens no window), in order, in frames of at most 100 events.
func TestBatchingDefaultWindow(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)
	subscribe(t, ctx, c, nil, "b")
	env.publishN("b", 0, 450)
	evs, frames := readEvents(t, ctx, c, 450)
	checkSequence(t, evs, "b", 0, 450)
	for _, f := range frames {
		if len(f.Events) > 100 {
			t.Fatalf("frame of %d events", len(f.Events))
		}
	}
	t.Logf("450 events in %d frames", len(frames))
}

func frameSizes(fs []*rtclient.Frame) []int {
	var out []int
	for _, f := range fs {
		out = append(out, len(f.Events))
	}
	return out
}

// Malformed, unknown and oversized client frames get an error frame or close code and
// never stall the server.
func TestBadClientFrames(t *testing.T) {
	env := newEnv(t, Config{MaxFrameBytes: 1024, MaxSubscriptions: 3}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)

	cases := []struct {
		frame string
		code  string
	}{
		{`not json`, protocol.CodeBadFrame},
		{`{"type":`, protocol.CodeBadFrame},
		{`{}`, protocol.CodeBadFrame},
		{`[]`, protocol.CodeBadFrame},
		{`{"type":"bogus","id":"x1"}`, protocol.CodeUnknownType},
		{`{"type":"subscribe","id":"x2"}`, protocol.CodeBadFrame},
		{`{"type":"subscribe","channels":["a"],"cursor":{"seq":5}}`, protocol.CodeBadCursor},
		{`{"type":"subscribe","channels":"a"}`, protocol.CodeBadFrame},
	}
	for _, tc := range cases {
		if err := c.SendRaw(ctx, []byte(tc.frame)); err != nil {
			t.Fatal(err)
		}
		f, err := c.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("%s: %v", tc.frame, err)
		}
		if f.Type != protocol.TypeError || f.Code != tc.code {
			t.Errorf("%s: got %s/%s, want error/%s", tc.frame, f.Type, f.Code, tc.code)
		}
	}

	// One bad channel fails alone; the subscription limit answers per channel.
	f := subscribe(t, ctx, c, nil, "ok.1", "bad channel", "ok.2", "a>", "ok.3", "ok.4")
	want := map[string]string{"ok.1": "", "ok.2": "", "ok.3": "", "bad channel": protocol.CodeBadChannel,
		"a>": protocol.CodeBadChannel, "ok.4": protocol.CodeTooManySubs}
	if len(f.Results) != len(want) {
		t.Fatalf("results %+v", f.Results)
	}
	for _, r := range f.Results {
		if r.OK != (want[r.Channel] == "") || r.Code != want[r.Channel] {
			t.Errorf("result %+v, want code %q", r, want[r.Channel])
		}
	}
	// The connection still works.
	env.publishN("ok.2", 0, 1)
	evs, _ := readEvents(t, ctx, c, 1)
	checkSequence(t, evs, "ok.2", 0, 1)
	if err := c.Send(ctx, &protocol.ClientFrame{Type: protocol.TypePing, TS: 42}); err != nil {
		t.Fatal(err)
	}
	if f, err := c.ReadFrame(ctx); err != nil || f.Type != protocol.TypePong || f.TS != 42 || f.ServerTime == 0 {
		t.Fatalf("pong: %+v %v", f, err)
	}

	// An oversized frame closes with 1009; the server goes on serving others.
	_ = c.SendRaw(ctx, []byte(`{"type":"ping","pad":"`+strings.Repeat("x", 2000)+`"}`))
	_, err := readUntilClose(ctx, c)
	if code := rtclient.CloseCode(err); code != protocol.CloseTooBig {
		t.Fatalf("oversized frame: close %d (%v), want 1009", code, err)
	}
	c2 := env.dial(ctx, nil)
	subscribe(t, ctx, c2, nil, "after")
	testutil.WaitFor(t, "frame_too_big disconnect", func() bool {
		return env.eng.Snapshot().Disconnects["frame_too_big"] == 1
	})
}

// welcome.flags is every flag of the user, false ones included, and is omitted when
// there are none (docs/protocol.md "Frames from the server").
func TestWelcomeFlagsOmittedWhenNone(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hook  func(string) map[string]bool
		flags map[string]bool
	}{
		{"no hook", nil, nil},
		{"no flag", func(string) map[string]bool { return map[string]bool{} }, nil},
		{"flags", func(string) map[string]bool { return map[string]bool{"on": true, "off": false} }, map[string]bool{"on": true, "off": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newEnv(t, Config{WelcomeFlags: tc.hook}, bus.Config{})
			ctx := testutil.Context(t)
			w := env.dial(ctx, nil).Welcome
			if (w.Flags == nil) != (tc.flags == nil) || fmt.Sprint(w.Flags) != fmt.Sprint(tc.flags) {
				t.Fatalf("welcome flags %#v, want %#v", w.Flags, tc.flags)
			}
			if w.Epoch == "" || w.HeartbeatMs == 0 || w.Limits.MaxFrameBytes == 0 || w.Session == "" {
				t.Fatalf("welcome %+v: a field that is always present is missing", w)
			}
		})
	}
}

// A text frame that is not UTF-8 fails the connection with 1007 (RFC 6455 section 8.1),
// counted as a protocol error; valid UTF-8 beyond ASCII is a frame like any other.
func TestInvalidUTF8Closes1007(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)
	if err := c.SendRaw(ctx, []byte(`{"type":"ping","ts":7,"note":"héllo ✓"}`)); err != nil {
		t.Fatal(err)
	}
	if f, err := c.ReadFrame(ctx); err != nil || f.Type != protocol.TypePong || f.TS != 7 {
		t.Fatalf("pong to a UTF-8 ping: %+v %v", f, err)
	}
	if err := c.SendRaw(ctx, []byte("{\"type\":\"ping\",\"ts\":8,\"note\":\"\xff\xfe\"}")); err != nil {
		t.Fatal(err)
	}
	_ = c.SendRaw(ctx, []byte(`{"type":"ping","ts":9}`)) // not answered: the connection has failed
	frames, err := readUntilClose(ctx, c)
	if code := rtclient.CloseCode(err); code != protocol.CloseBadData {
		t.Fatalf("close %d (%v), want 1007", code, err)
	}
	if frames != 0 {
		t.Errorf("%d frames before the close, want none", frames)
	}
	testutil.WaitFor(t, "protocol_error disconnect", func() bool {
		return env.eng.Snapshot().Disconnects["protocol_error"] == 1
	})
	c2 := env.dial(ctx, nil) // the server goes on
	subscribe(t, ctx, c2, nil, "after")
}

// Too many bad frames close the connection with 4400 (do not reconnect).
func TestTooManyBadFrames(t *testing.T) {
	env := newEnv(t, Config{MaxBadFrames: 5}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)
	for range 5 {
		_ = c.SendRaw(ctx, []byte(`nope`))
	}
	_, err := readUntilClose(ctx, c)
	if code := rtclient.CloseCode(err); code != protocol.CloseBadRequest {
		t.Fatalf("close %d, want 4400", code)
	}
}

// readUntilClose reads (and counts) frames until the connection ends.
func readUntilClose(ctx context.Context, c *rtclient.Conn) (frames int, err error) {
	for {
		if _, err := c.ReadFrame(ctx); err != nil {
			return frames, err
		}
		frames++
	}
}

// A client that sends nothing is closed 4001 after the heartbeat timeout; one that
// answers pings stays. The timeout is long next to the ping interval so that a loaded
// machine cannot delay the answering client's pongs past it; the exact bound is
// TestHeartbeatTimeoutIsTwoIntervals, on an injected clock.
func TestHeartbeat(t *testing.T) {
	env := newEnv(t, Config{HeartbeatInterval: 50 * time.Millisecond, HeartbeatTimeout: 2 * time.Second}, bus.Config{})
	ctx := testutil.Context(t)
	silent := env.dial(ctx, nil)
	alive := env.dial(ctx, nil)

	done := make(chan error, 1)
	go func() {
		for {
			f, err := alive.ReadFrame(ctx)
			if err != nil {
				done <- err
				return
			}
			if f.Type == protocol.TypePing {
				_ = alive.Send(ctx, &protocol.ClientFrame{Type: protocol.TypePong, TS: f.TS})
			}
		}
	}()
	start := time.Now()
	pings, err := readUntilClose(ctx, silent)
	if code := rtclient.CloseCode(err); code != protocol.CloseHeartbeat {
		t.Fatalf("silent client: close %d (%v), want 4001", code, err)
	}
	if pings == 0 {
		t.Error("silent client got no ping before the close")
	}
	t.Logf("dead client removed after %v (timeout 2s)", time.Since(start).Round(time.Millisecond))
	testutil.WaitFor(t, "one active connection", func() bool { return env.eng.Snapshot().ActiveConnections == 1 })
	select {
	case err := <-done:
		t.Fatalf("answering client closed: %v", err)
	default:
	}
	if got := env.eng.Snapshot().Disconnects["heartbeat_timeout"]; got != 1 {
		t.Errorf("heartbeat_timeout disconnects %d", got)
	}
}

// Shutdown flushes queued events, then closes with 4101 and a retry hint in range.
func TestShutdownDrains(t *testing.T) {
	env := newEnv(t, Config{RetryMin: 200 * time.Millisecond, RetryMax: 900 * time.Millisecond, BatchWindow: time.Hour}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, nil)
	subscribe(t, ctx, c, nil, "d")
	env.publishN("d", 0, 1)
	readEvents(t, ctx, c, 1)
	env.publishN("d", 1, 30) // held by the one-hour window
	testutil.WaitFor(t, "dispatch", func() bool { return env.eng.Snapshot().EventsDispatched == 31 })

	errc := make(chan error, 1)
	go func() { errc <- env.eng.Shutdown(ctx) }()
	var evs []protocol.Event
	var err error
	for {
		var f *rtclient.Frame
		f, err = c.ReadFrame(ctx)
		if err != nil {
			break
		}
		evs = append(evs, f.Events...)
	}
	checkSequence(t, evs, "d", 1, 30)
	if code := rtclient.CloseCode(err); code != protocol.CloseShutdown {
		t.Fatalf("close %d, want 4101", code)
	}
	hint := protocol.RetryHint(rtclient.CloseReason(err))
	if hint < 200 || hint > 900 {
		t.Errorf("retry hint %d ms outside [200, 900]", hint)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// New connections are refused while draining.
	_, err = rtclient.Dial(ctx, env.url, nil)
	var he *rtclient.HTTPError
	if !asHTTPError(err, &he) || he.Status != http.StatusServiceUnavailable || he.RetryAfter == "" {
		t.Fatalf("dial after shutdown: %v", err)
	}
}

func asHTTPError(err error, he **rtclient.HTTPError) bool {
	e, ok := err.(*rtclient.HTTPError)
	if ok {
		*he = e
	}
	return ok
}

// permessage-deflate is negotiated and large frames cross the wire smaller.
func TestCompression(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	ctx := testutil.Context(t)
	c := env.dial(ctx, &rtclient.DialOptions{Compression: true})
	subscribe(t, ctx, c, nil, "z")
	payload := `{"text":"` + strings.Repeat("realtime streaming for encore ", 40) + `"}`
	var evs []*protocol.Event
	for i := range 50 {
		evs = append(evs, &protocol.Event{ID: fmt.Sprintf("z-%d", i), Channel: "z", Data: []byte(payload)})
	}
	before := env.eng.Snapshot()
	env.publish(evs...)
	readEvents(t, ctx, c, 50)
	// The server counts a frame after its write returns, which may be after the client
	// read it: wait for the counters to catch up.
	testutil.WaitFor(t, "delivery counted", func() bool {
		return env.eng.Snapshot().EventsDelivered-before.EventsDelivered == 50
	})
	s := env.eng.Snapshot()
	raw, wire := s.BytesRaw-before.BytesRaw, s.BytesWire-before.BytesWire
	if raw < uint64(50*len(payload)) {
		t.Fatalf("raw bytes %d below payload", raw)
	}
	if wire*5 > raw {
		t.Errorf("wire %d bytes for %d raw: compression not applied", wire, raw)
	}
	t.Logf("raw %d wire %d (%.1fx)", raw, wire, float64(raw)/float64(wire))
}

// The publish endpoint checks the key, the body and the limits, and answers acks.
func TestPublishEndpoint(t *testing.T) {
	env := newEnv(t, Config{MaxPublishEvents: 3, MaxPublishBytes: 4096, MaxEventData: 100}, bus.Config{})
	url := env.srv.URL + "/v2/realtime/publish"
	cases := []struct {
		name, key, body string
		status          int
		contains        string
	}{
		{"no key", "", `{"channel":"a"}`, 401, "publisher key"},
		{"wrong key", "nope", `{"channel":"a"}`, 401, "publisher key"},
		{"bad json", "test-key", `{"channel":`, 400, "bad JSON"},
		{"trailing", "test-key", `{"channel":"a"} {}`, 400, "trailing"},
		{"bad channel", "test-key", `{"channel":"a b"}`, 400, "event 0"},
		{"bad data", "test-key", `{"channel":"a","data":"x`, 400, "bad JSON"},
		{"data too big", "test-key", `{"channel":"a","data":"` + strings.Repeat("x", 200) + `"}`, 400, "limit 100"},
		{"bad in batch", "test-key", `{"events":[{"channel":"a"},{"channel":""}]}`, 400, "event 1"},
		{"empty batch", "test-key", `{"events":[]}`, 400, "empty"},
		{"too many", "test-key", `{"events":[{"channel":"a"},{"channel":"a"},{"channel":"a"},{"channel":"a"}]}`, 413, "limit 3"},
		{"too large", "test-key", `{"channel":"a","data":"` + strings.Repeat("x", 5000) + `"}`, 413, "4096"},
		{"bad id", "test-key", `{"channel":"a","id":"has space"}`, 400, "id"},
		{"one", "test-key", `{"channel":"a","id":"p1","data":{"x":1}}`, 200, `"id":"p1","seq":1`},
		{"batch with dup", "test-key", `{"events":[{"channel":"a","id":"p2"},{"channel":"a","id":"p1"}]}`, 200, `"id":"p1","seq":1,"duplicate":true`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := httpPost(t, url, tc.key, tc.body)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.contains) {
				t.Fatalf("got %d %s, want %d containing %q", resp.StatusCode, body, tc.status, tc.contains)
			}
		})
	}
	s := env.eng.Snapshot()
	if s.EventsPublished != 2 || s.EventsDuplicate != 1 {
		t.Errorf("published %d duplicate %d, want 2 and 1", s.EventsPublished, s.EventsDuplicate)
	}
	// Refused bodies are counted by reason ("too large" is refused before decoding).
	if r := s.PublishRefusals; r["invalid"] != 8 || r["too_many"] != 1 || r["payload"] != 0 {
		t.Errorf("publish refusals %v, want invalid 8, too_many 1, payload 0", r)
	}
}

// Config.CheckEvent refuses events on both publish paths (HTTP and ValidateEvents, the
// Encore topic's), with the batch, and each refusal is counted as "payload".
func TestCheckEvent(t *testing.T) {
	errShape := errors.New("not the declared shape")
	check := func(ev *protocol.Event) error {
		if ev.Channel == "typed" && string(ev.Data) != `{"ok":true}` {
			return errShape
		}
		return nil
	}
	env := newEnv(t, Config{CheckEvent: check}, bus.Config{})
	url := env.srv.URL + "/v2/realtime/publish"
	for _, tc := range []struct {
		name, body string
		status     int
		contains   string
	}{
		{"typed ok", `{"channel":"typed","data":{"ok":true}}`, 200, `"seq":1`},
		{"typed wrong", `{"channel":"typed","data":{"ok":1}}`, 400, "event 0: not the declared shape"},
		{"batch with one wrong", `{"events":[{"channel":"other","data":1},{"channel":"typed"}]}`, 400, "event 1"},
		{"untyped", `{"channel":"other","data":[1]}`, 200, `"seq":2`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := httpPost(t, url, "test-key", tc.body)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.contains) {
				t.Fatalf("got %d %s, want %d containing %q", resp.StatusCode, body, tc.status, tc.contains)
			}
		})
	}
	if err := env.eng.ValidateEvents([]*protocol.Event{{Channel: "typed", Data: json.RawMessage(`{}`)}}); !errors.Is(err, errShape) {
		t.Errorf("ValidateEvents: %v, want the check's error", err)
	}
	s := env.eng.Snapshot()
	if s.EventsPublished != 2 || s.PublishRefusals["payload"] != 3 || s.PublishRefusals["invalid"] != 0 {
		t.Errorf("published %d, refusals %v: want 2 published, 3 payload refusals", s.EventsPublished, s.PublishRefusals)
	}
}

// /v2/realtime/metrics and /metrics expose the counters.
func TestMetricsEndpoints(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	env.publishN("m", 0, 3)
	if n := env.eng.Snapshot().PublishLatencyMs.Count; n != 1 {
		t.Errorf("%d publish acknowledgements timed, want 1", n)
	}
	for _, path := range []string{"/v2/realtime/metrics", "/metrics"} {
		resp, err := http.Get(env.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		_, _ = ioCopy(&b, resp)
		// One publish of three events: one bus acknowledgement timed.
		wants := []string{`"eventsPublished":3`, `"publishLatencyMs":{`}
		if path == "/metrics" {
			wants = []string{"realtime_events_published_total 3", "realtime_publish_duration_seconds_count 1"}
		}
		for _, want := range wants {
			if !strings.Contains(b.String(), want) {
				t.Errorf("%s lacks %q:\n%.600s", path, want, b.String())
			}
		}
	}
}

func ioCopy(b *strings.Builder, resp *http.Response) (int64, error) {
	defer resp.Body.Close()
	buf := make([]byte, 32<<10)
	var n int64
	for {
		k, err := resp.Body.Read(buf)
		b.Write(buf[:k])
		n += int64(k)
		if err != nil {
			return n, nil
		}
	}
}

// A browser origin other than the host is refused unless allowed.
func TestOriginCheck(t *testing.T) {
	env := newEnv(t, Config{AcceptOrigins: []string{"app.example.com"}}, bus.Config{})
	ctx := testutil.Context(t)
	h := http.Header{"Origin": []string{"https://evil.example.net"}}
	_, err := rtclient.Dial(ctx, env.url, &rtclient.DialOptions{Header: h})
	var he *rtclient.HTTPError
	if !asHTTPError(err, &he) || he.Status != http.StatusForbidden {
		t.Fatalf("foreign origin: %v", err)
	}
	h.Set("Origin", "https://app.example.com")
	c, err := rtclient.Dial(ctx, env.url, &rtclient.DialOptions{Header: h})
	if err != nil {
		t.Fatalf("allowed origin: %v", err)
	}
	c.Close()
}

// Frames of every header size (7-bit, 16-bit and 64-bit lengths) reach plain and
// compressing clients intact while the clients ping (the library answers with pongs on
// the same socket, interleaved with the writer's raw frames).
func TestFrameSizesWithPings(t *testing.T) {
	env := newEnv(t, Config{BatchWindow: 30 * time.Millisecond, BatchWindowMax: 30 * time.Millisecond}, bus.Config{})
	ctx := testutil.Context(t)
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compression=%v", compress), func(t *testing.T) {
			var evs []*protocol.Event
			add := func(n, size int) {
				for range n {
					i := len(evs)
					evs = append(evs, &protocol.Event{ID: fmt.Sprintf("f-%v-%d", compress, i), Channel: "f",
						Data: []byte(fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat(string(rune('a'+i%26)), size)))})
				}
			}
			add(1, 1)      // one small event: a frame under 126 bytes
			add(1, 600)    // 16-bit length
			add(100, 1000) // coalesced: frames over 64 KiB
			c := env.dial(ctx, &rtclient.DialOptions{Compression: compress})
			subscribe(t, ctx, c, nil, "f")
			stop := make(chan struct{})
			pingCtx, stopPings := context.WithCancel(ctx)
			defer stopPings()
			pinged := make(chan int)
			var answered atomic.Int64
			go func() {
				n := 0
				defer func() { pinged <- n }()
				for {
					select {
					case <-stop:
						return
					default:
					}
					pctx, pcancel := context.WithTimeout(pingCtx, testutil.Patience)
					err := c.Ping(pctx)
					pcancel()
					if err != nil {
						select {
						case <-stop: // the reader is done: the last pong may not be read
						default:
							t.Errorf("ping %d: %v", n, err)
						}
						return
					}
					n++
					answered.Add(1)
				}
			}()
			before := env.eng.Snapshot().FramesWritten
			env.publish(evs[0])
			env.publish(evs[1])
			env.publish(evs[2:]...)
			got, _ := readEvents(t, ctx, c, len(evs))
			// Pongs are read by the reader: keep one reading until a ping was answered.
			go func() { _, _ = c.ReadFrame(pingCtx) }()
			testutil.WaitFor(t, "a ping answered", func() bool { return answered.Load() > 0 })
			close(stop)
			stopPings()
			for i, ev := range got {
				if ev.ID != evs[i].ID || !bytes.Equal(ev.Data, evs[i].Data) {
					t.Fatalf("event %d: id %s (%d data bytes), want %s (%d)", i, ev.ID, len(ev.Data), evs[i].ID, len(evs[i].Data))
				}
			}
			if n := <-pinged; n == 0 {
				t.Error("no ping answered")
			}
			if frames := env.eng.Snapshot().FramesWritten - before; frames >= uint64(len(evs)) {
				t.Errorf("%d frames for %d events: nothing coalesced", frames, len(evs))
			}
		})
	}
}

// Connections whose sockets stop draining never hold a writer: what their sockets do
// not take waits off the writers (parked), so with a single writer the other
// connections keep being served long before the stalled ones reach their write
// timeout: the healthy client has every event while no stalled socket has timed out
// yet (no write_error).
func TestStalledSocketsNeverHoldWriters(t *testing.T) {
	// The queue holds all 12 MB: a healthy reader slowed by a loaded machine must not be
	// cut as a slow consumer (this test is about stalled sockets, not the queue bound).
	env := newEnv(t, Config{Writers: 1, WriteTimeout: 2 * testutil.Patience, QueueMaxBytes: 64 << 20}, bus.Config{})
	ctx := testutil.ContextWithin(t, 5*time.Minute) // a guard against a hung test, not a speed budget
	for range 3 {
		stalled := env.dial(ctx, nil) // subscribes and never reads again
		subscribe(t, ctx, stalled, nil, "big")
	}
	healthy := env.dial(ctx, nil)
	subscribe(t, ctx, healthy, nil, "big")
	pad := strings.Repeat("x", 60<<10)
	const total = 200 // 12 MB: more than the stalled sockets' buffers hold
	start := time.Now()
	go func() {
		for i := 0; i < total; i += 10 {
			var evs []*protocol.Event
			for j := i; j < i+10; j++ {
				evs = append(evs, &protocol.Event{ID: fmt.Sprintf("big-%d", j), Channel: "big", Data: []byte(`"` + pad + `"`)})
			}
			if _, err := env.eng.Publish(ctx, evs); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	got, _ := readEvents(t, ctx, healthy, total)
	checkSequence(t, got, "big", 0, total)
	took := time.Since(start)
	if n := env.eng.Snapshot().Disconnects["write_error"]; n != 0 {
		t.Errorf("healthy client served only after %d stalled sockets timed out (%v)", n, took)
	}
	if n := env.eng.Snapshot().ParkedWriters; n == 0 {
		t.Error("no writer parked: the stalled sockets never filled")
	}
	t.Logf("healthy client got %d events in %v; %d stalled writers parked", total, took.Round(time.Millisecond), env.eng.Snapshot().ParkedWriters)
}

// A write that cannot finish within WriteTimeout (the client stopped reading and its
// socket buffers are full) ends the connection as write_error, before the queue bound.
func TestWriteTimeout(t *testing.T) {
	env := newEnv(t, Config{WriteTimeout: 500 * time.Millisecond, QueueMaxBytes: 256 << 20, QueueMaxEvents: 100000}, bus.Config{})
	ctx := testutil.Context(t)
	stalled := env.dial(ctx, nil) // never reads after subscribing
	subscribe(t, ctx, stalled, nil, "wt")
	pad := strings.Repeat("x", 60<<10)
	for i := 0; i < 400; i += 10 { // 24 MB, more than loopback socket buffers hold
		var evs []*protocol.Event
		for j := i; j < i+10; j++ {
			evs = append(evs, &protocol.Event{ID: fmt.Sprintf("wt-%d", j), Channel: "wt", Data: []byte(`"` + pad + `"`)})
		}
		env.publish(evs...)
		if env.eng.Snapshot().Disconnects["write_error"] > 0 {
			break
		}
	}
	testutil.WaitFor(t, "write_error disconnect", func() bool { return env.eng.Snapshot().Disconnects["write_error"] == 1 })
	if s := env.eng.Snapshot(); s.SlowDisconnects != 0 {
		t.Errorf("slow-consumer disconnects %d: the queue bound was hit first", s.SlowDisconnects)
	}
}
