package stream

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// tokenAuth treats ?token= as the user ID; "bad" is refused with 401.
func tokenAuth(r *http.Request) (*Identity, error) {
	tok := r.URL.Query().Get("token")
	if tok == "bad" {
		return nil, &AuthError{Status: http.StatusUnauthorized, Msg: "bad token"}
	}
	return &Identity{UserID: tok}, nil
}

type pollResult struct {
	status int
	header http.Header
	body   []byte // as received (gzipped when Content-Encoding says so)
	resp   protocol.PollResponse
	perr   protocol.PollError
}

// noGzip is a client whose transport neither asks for nor decodes gzip by itself.
var noGzip = &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 100}}

// doPoll sends one poll with query q and headers h and decodes the answer.
func (env *testEnv) doPoll(ctx context.Context, q url.Values, h http.Header) (*pollResult, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, env.srv.URL+"/v2/realtime/poll?"+q.Encode(), nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := noGzip.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	r := &pollResult{status: resp.StatusCode, header: resp.Header, body: b}
	plain := b
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("gunzip: %w", err)
		}
		if plain, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("gunzip: %w", err)
		}
	}
	if resp.StatusCode == http.StatusOK {
		err = json.Unmarshal(plain, &r.resp)
	} else {
		err = json.Unmarshal(plain, &r.perr)
	}
	if err != nil {
		return nil, fmt.Errorf("decode %q: %w", plain, err)
	}
	return r, nil
}

func (env *testEnv) mustPoll(q url.Values, h http.Header) *pollResult {
	env.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	r, err := env.doPoll(ctx, q, h)
	if err != nil {
		env.t.Fatalf("poll: %v", err)
	}
	return r
}

func pollQuery(channels string, cur *protocol.Cursor, timeout string) url.Values {
	q := url.Values{"channels": {channels}}
	if cur != nil {
		q.Set("cursor", protocol.FormatCursor(*cur))
	}
	if timeout != "" {
		q.Set("timeout", timeout)
	}
	return q
}

// waitDispatched waits until the engine dispatched seq (publish returns at the bus ack).
func (env *testEnv) waitDispatched(seq uint64) {
	env.t.Helper()
	testutil.WaitFor(env.t, "dispatch", func() bool { return env.eng.headSeq() >= seq })
}

func (env *testEnv) waiters() int {
	n, _, _ := env.eng.lp.len()
	return n
}

// A first poll without a cursor answers at once with the head as its cursor.
func TestPollWithoutCursorStartsFromNow(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	acks := env.publishN("a", 0, 3)
	env.waitDispatched(acks[2].Seq)
	r := env.mustPoll(pollQuery("a", nil, ""), nil)
	if r.status != 200 || len(r.resp.Events) != 0 {
		t.Fatalf("status %d events %d, want 200 and none", r.status, len(r.resp.Events))
	}
	if r.resp.Cursor.Seq != acks[2].Seq || r.resp.Cursor.Epoch != env.eng.Epoch() {
		t.Fatalf("cursor %+v, want head %d epoch %s", r.resp.Cursor, acks[2].Seq, env.eng.Epoch())
	}
	if r.resp.Transport != TransportStream || r.resp.Recovery != nil {
		t.Fatalf("transport %q recovery %+v", r.resp.Transport, r.resp.Recovery)
	}
	if s := env.eng.Snapshot(); s.LongPollWaits != 0 {
		t.Fatalf("%d polls waited: a poll without cursor must not wait", s.LongPollWaits)
	}
}

// A waiting poll answers soon after an event on its channels is published; events on
// other channels do not answer it but advance its cursor.
func TestPollWakesOnPublish(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	ctx := testutil.Context(t)
	head := env.mustPoll(pollQuery("a,b", nil, ""), nil).resp.Cursor

	type res struct {
		r   *pollResult
		err error
		at  time.Time
	}
	var worst time.Duration
	for round := range 5 {
		done := make(chan res, 1)
		go func() {
			r, err := env.doPoll(ctx, pollQuery("a,b", &head, "20s"), nil)
			done <- res{r, err, time.Now()}
		}()
		testutil.WaitFor(t, "a waiting poll", func() bool { return env.waiters() == 1 })
		if round == 0 {
			// An event on another channel does not answer the poll: after its dispatch
			// (and a moment for a wrong answer to show) the poll still waits, and its
			// answer below holds the event of its own channel only.
			other := env.publishN("other", 0, 1)
			env.waitDispatched(other[0].Seq)
			time.Sleep(100 * time.Millisecond)
			if env.waiters() != 1 {
				t.Fatal("an event on another channel answered the poll")
			}
		}
		published := time.Now()
		ack := env.publish(&protocol.Event{ID: fmt.Sprintf("w-%d", round), Channel: "b"})[0]
		got := <-done
		if got.err != nil || got.r.status != 200 {
			t.Fatalf("poll: %v %+v", got.err, got.r)
		}
		lat := got.at.Sub(published)
		worst = max(worst, lat)
		t.Logf("round %d: publish to poll answer %v", round, lat)
		if len(got.r.resp.Events) != 1 || got.r.resp.Events[0].ID != fmt.Sprintf("w-%d", round) {
			t.Fatalf("events %+v", got.r.resp.Events)
		}
		if got.r.resp.Cursor.Seq != ack.Seq {
			t.Fatalf("cursor %d, want %d", got.r.resp.Cursor.Seq, ack.Seq)
		}
		head = got.r.resp.Cursor
	}
	// Woken by the publish, not by the 20 s timeout (the wake latency is
	// BenchmarkPollWake's business).
	t.Logf("slowest wake %v", worst)
	testutil.WaitFor(t, "no waiters", func() bool { return env.waiters() == 0 })
	s := env.eng.Snapshot()
	if s.LongPollWakeups != 5 || s.LongPollWaits != 5 || s.LongPollWaiting != 0 {
		t.Fatalf("metrics: wakeups %d waits %d waiting %d", s.LongPollWakeups, s.LongPollWaits, s.LongPollWaiting)
	}
}

// A poll with nothing to answer returns at its timeout, empty, with the cursor it got.
// A timeout above MaxPollTimeout is clamped: the poll asking for an hour is answered
// after MaxPollTimeout (otherwise mustPoll's deadline fails the test).
func TestPollTimeout(t *testing.T) {
	env := newEnv(t, Config{PollTimeout: 500 * time.Millisecond, MaxPollTimeout: time.Second}, bus.Config{})
	head := env.mustPoll(pollQuery("a", nil, ""), nil).resp.Cursor
	for _, tc := range []struct {
		timeout  string
		min      time.Duration // the timer never fires early
		timedOut bool          // answered by its timeout (false: at once, without waiting)
	}{
		{"300ms", 300 * time.Millisecond, true},
		{"0", 0, false},
		{"3600", time.Second, true}, // clamped to MaxPollTimeout
	} {
		t.Run(tc.timeout, func(t *testing.T) {
			before := env.eng.Snapshot()
			start := time.Now()
			r := env.mustPoll(pollQuery("a", &head, tc.timeout), nil)
			d := time.Since(start)
			if r.status != 200 || len(r.resp.Events) != 0 || r.resp.Cursor != head {
				t.Fatalf("status %d events %d cursor %+v, want 200, none, %+v", r.status, len(r.resp.Events), r.resp.Cursor, head)
			}
			if d < tc.min {
				t.Fatalf("answered after %v, before its %v timeout", d, tc.min)
			}
			after := env.eng.Snapshot()
			if timedOut := after.LongPollTimeouts > before.LongPollTimeouts; timedOut != tc.timedOut {
				t.Fatalf("answered by its timeout: %v, want %v (waits %d -> %d)", timedOut, tc.timedOut, before.LongPollWaits, after.LongPollWaits)
			}
		})
	}
	if s := env.eng.Snapshot(); s.LongPollTimeouts != 2 || s.LongPollWaiting != 0 {
		t.Fatalf("timeouts %d waiting %d, want 2 and 0", s.LongPollTimeouts, s.LongPollWaiting)
	}
	if env.waiters() != 0 {
		t.Fatal("waiter left behind")
	}
	resp, err := http.Get(env.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	prom, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"realtime_long_poll_requests_total 4", "realtime_long_poll_timeouts_total 2", `realtime_transport_switches_total{kind="to_poll"} 0`} {
		if !strings.Contains(string(prom), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// Every limit of the poll endpoint answers with its documented status.
func TestPollLimits(t *testing.T) {
	env := newEnv(t, Config{
		Authenticate:     tokenAuth,
		Authorize:        func(id *Identity, ch string) error { return forbidPrivate(id, ch) },
		MaxSubscriptions: 3,
		MaxPollsPerUser:  2,
		MaxPollWaiters:   3,
	}, bus.Config{})
	head := env.mustPoll(pollQuery("a", nil, ""), nil).resp.Cursor
	for _, tc := range []struct {
		name   string
		q      url.Values
		status int
		code   string
	}{
		{"no channels", url.Values{}, 400, protocol.CodeBadFrame},
		{"bad channel", pollQuery("a,b c", nil, ""), 400, protocol.CodeBadChannel},
		{"wildcard", pollQuery("a.*", nil, ""), 400, protocol.CodeBadChannel},
		{"too many channels", pollQuery("a,b,c,d", nil, ""), 400, protocol.CodeTooManySubs},
		{"forbidden", pollQuery("a,user:bob:inbox", nil, ""), 403, protocol.CodeForbidden},
		{"bad cursor", url.Values{"channels": {"a"}, "cursor": {"12"}}, 400, protocol.CodeBadCursor},
		{"bad timeout", url.Values{"channels": {"a"}, "timeout": {"-3s"}}, 400, protocol.CodeBadFrame},
		{"bad token", url.Values{"channels": {"a"}, "token": {"bad"}}, 401, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.q.Get("token") == "" {
				tc.q.Set("token", "alice")
			}
			r := env.mustPoll(tc.q, nil)
			if r.status != tc.status || r.perr.Code != tc.code {
				t.Fatalf("status %d code %q (%s), want %d %q", r.status, r.perr.Code, r.perr.Error, tc.status, tc.code)
			}
		})
	}
	// Own private channel is fine.
	if r := env.mustPoll(url.Values{"channels": {"user:alice:inbox"}, "token": {"alice"}}, nil); r.status != 200 {
		t.Fatalf("own channel: %d", r.status)
	}

	// Concurrent polls: 2 per user (429), 3 per instance (503), both with Retry-After.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	startWaiting := func(user string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q := pollQuery("a", &head, "20s")
			q.Set("token", user)
			_, _ = env.doPoll(ctx, q, nil)
		}()
	}
	startWaiting("alice")
	startWaiting("alice")
	testutil.WaitFor(t, "2 waiting polls", func() bool { return env.waiters() == 2 })
	q := pollQuery("a", &head, "20s")
	q.Set("token", "alice")
	r := env.mustPoll(q, nil)
	if r.status != 429 || r.header.Get("Retry-After") == "" || r.perr.Code != protocol.CodeRateLimited {
		t.Fatalf("third poll of a user: %d %q %+v, want 429 with Retry-After", r.status, r.header.Get("Retry-After"), r.perr)
	}
	startWaiting("bob")
	testutil.WaitFor(t, "3 waiting polls", func() bool { return env.waiters() == 3 })
	q.Set("token", "carol")
	r = env.mustPoll(q, nil)
	if r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Fatalf("poll over instance capacity: %d %q, want 503 with Retry-After", r.status, r.header.Get("Retry-After"))
	}
	cancel()
	wg.Wait()
	testutil.WaitFor(t, "waiters removed on cancel", func() bool { return env.waiters() == 0 })
	if _, ch, users := env.eng.lp.len(); ch != 0 || users != 0 {
		t.Fatalf("registry keeps %d channels, %d users", ch, users)
	}
	s := env.eng.Snapshot()
	t.Logf("refusals %v cancelled %d", s.LongPollRefusals, s.LongPollCancelled)
	if s.LongPollRefusals["user_limit"] != 1 || s.LongPollRefusals["capacity"] != 1 || s.LongPollRefusals["forbidden"] != 1 {
		t.Fatalf("refusals %v", s.LongPollRefusals)
	}
}

func forbidPrivate(id *Identity, ch string) error {
	if rest, ok := strings.CutPrefix(ch, "user:"); ok {
		if owner, _, _ := strings.Cut(rest, ":"); owner != id.UserID {
			return errors.New("private channel of another user")
		}
	}
	return nil
}

// Answers of 1024 bytes or more are gzipped when the client accepts gzip; smaller ones,
// and any answer to a client that does not, are sent as they are.
func TestPollGzip(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	head := env.mustPoll(pollQuery("g", nil, ""), nil).resp.Cursor
	acks := env.publishN("g", 0, 40) // ~90 bytes each: ~3.6 KB answer
	env.waitDispatched(acks[39].Seq)
	gz := http.Header{"Accept-Encoding": {"gzip, deflate"}}

	big := env.mustPoll(pollQuery("g", &head, ""), gz)
	if big.header.Get("Content-Encoding") != "gzip" || len(big.resp.Events) != 40 {
		t.Fatalf("big answer: encoding %q, %d events", big.header.Get("Content-Encoding"), len(big.resp.Events))
	}
	if vary := strings.Join(big.header.Values("Vary"), ", "); !strings.Contains(vary, "Accept-Encoding") {
		t.Fatalf("Vary %q", vary)
	}
	s := env.eng.Snapshot()
	t.Logf("40 events: %d bytes, gzipped %d bytes (%.0f%%)", s.LongPollBytesRaw, s.LongPollBytesSent,
		100*float64(s.LongPollBytesSent)/float64(s.LongPollBytesRaw))

	plain := env.mustPoll(pollQuery("g", &head, ""), nil)
	if plain.header.Get("Content-Encoding") != "" || len(plain.resp.Events) != 40 {
		t.Fatalf("client without gzip got encoding %q", plain.header.Get("Content-Encoding"))
	}
	refused := env.mustPoll(pollQuery("g", &head, ""), http.Header{"Accept-Encoding": {"gzip;q=0, identity"}})
	if refused.header.Get("Content-Encoding") != "" {
		t.Fatal("gzip;q=0 got gzip")
	}
	// One event: well under 1 KB.
	cur := protocol.Cursor{Seq: big.resp.Events[38].Seq, Epoch: head.Epoch}
	small := env.mustPoll(pollQuery("g", &cur, ""), gz)
	if small.header.Get("Content-Encoding") != "" || len(small.resp.Events) != 1 || len(small.body) >= 1024 {
		t.Fatalf("small answer: encoding %q, %d events, %d bytes", small.header.Get("Content-Encoding"), len(small.resp.Events), len(small.body))
	}
	if n, _ := strconv.Atoi(small.header.Get("Content-Length")); n != len(small.body) {
		t.Fatalf("Content-Length %d, body %d", n, len(small.body))
	}
}

func TestAcceptsGzip(t *testing.T) {
	for h, want := range map[string]bool{
		"": false, "gzip": true, "GZIP": true, "br, gzip;q=0.5": true, "gzip;q=0": false, "*": true,
		"deflate": false, "gzip ; q=0.0": false, "identity, *;q=1": true, "x-gzip": false,
	} {
		if got := acceptsGzip(h); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", h, got, want)
		}
	}
}

// A client polling from an old cursor gets every missed event of its channels exactly
// once and in order, from the bus and then from the window, PollMaxEvents at a time.
func TestPollResumeExactlyOnce(t *testing.T) {
	env := newEnv(t, Config{WindowEvents: 500, PollMaxEvents: 300}, bus.Config{})
	start := env.mustPoll(pollQuery("a", nil, ""), nil).resp.Cursor
	for i := range 4 {
		env.publishN("a", i*250, 250)
		env.publishN("b", i*250, 250) // other channel, interleaved
	}
	cur := start
	var got []protocol.Event
	polls := 0
	for len(got) < 1000 {
		polls++
		if polls > 20 {
			t.Fatalf("too many polls: %d events after %d", len(got), polls)
		}
		r := env.mustPoll(pollQuery("a", &cur, "2s"), nil)
		if r.status != 200 || r.resp.Recovery != nil {
			t.Fatalf("poll %d: %d %+v", polls, r.status, r.resp.Recovery)
		}
		if len(r.resp.Events) > 300 {
			t.Fatalf("answer of %d events over PollMaxEvents", len(r.resp.Events))
		}
		got = append(got, r.resp.Events...)
		cur = r.resp.Cursor
	}
	checkSequence(t, got, "a", 0, 1000)
	t.Logf("1000 events in %d polls; replayed from the bus at first (window 500)", polls)
	// Caught up: the next poll waits and times out with nothing.
	r := env.mustPoll(pollQuery("a", &cur, "200ms"), nil)
	if len(r.resp.Events) != 0 || r.resp.Cursor.Seq < cur.Seq {
		t.Fatalf("after catching up: %d events, cursor %+v", len(r.resp.Events), r.resp.Cursor)
	}
}

// Cursors that cannot be recovered get the stream's explicit answer and the head.
func TestPollNotRecovered(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	acks := env.publishN("a", 0, 5)
	env.waitDispatched(acks[4].Seq)
	head := protocol.Cursor{Seq: acks[4].Seq, Epoch: env.eng.Epoch()}
	for _, tc := range []struct {
		cur    protocol.Cursor
		reason string
	}{
		{protocol.Cursor{Seq: 2, Epoch: "otherepoch"}, protocol.ReasonEpochMismatch},
		{protocol.Cursor{Seq: head.Seq + 100, Epoch: head.Epoch}, protocol.ReasonFuture},
	} {
		t.Run(tc.reason, func(t *testing.T) {
			r := env.mustPoll(pollQuery("a", &tc.cur, "5s"), nil)
			if r.status != 200 || r.resp.Recovery == nil || r.resp.Recovery.Recovered || r.resp.Recovery.Reason != tc.reason {
				t.Fatalf("status %d recovery %+v, want not recovered (%s)", r.status, r.resp.Recovery, tc.reason)
			}
			if r.resp.Cursor != head || len(r.resp.Events) != 0 {
				t.Fatalf("cursor %+v events %d, want head %+v and none", r.resp.Cursor, len(r.resp.Events), head)
			}
		})
	}
}

// The streaming switch: refused upgrades close 4300 with a retry hint, connections of
// users no longer allowed get a transport frame and 4300, polls say which transport
// to use, and waiting polls learn at once that streaming is back.
func TestStreamingSwitch(t *testing.T) {
	blocked := func(uid string) bool { return uid != "mallory" }
	env := newEnv(t, Config{Authenticate: tokenAuth, StreamingAllowed: blocked,
		PollProbeInterval: 10 * time.Second, StreamReturnSpread: 200 * time.Millisecond}, bus.Config{})
	ctx := testutil.Context(t)

	// Refused at upgrade: no welcome, close 4300 with retry=5000..10000.
	_, err := rtclient.Dial(ctx, env.url, &rtclient.DialOptions{Token: "mallory"})
	if code := rtclient.CloseCode(err); code != protocol.CloseUsePoll {
		t.Fatalf("refused dial: code %d (%v), want 4300", code, err)
	}
	if h := protocol.RetryHint(rtclient.CloseReason(err)); h < 5000 || h > 10000 {
		t.Fatalf("retry hint %d, want 5000..10000", h)
	}

	alice := env.dial(ctx, &rtclient.DialOptions{Token: "alice", Channels: []string{"a"}})
	bob := env.dial(ctx, &rtclient.DialOptions{Token: "bob", Channels: []string{"a"}})
	subscribedOK(t, ctx, alice)
	subscribedOK(t, ctx, bob)

	// Alice may no longer stream.
	if moved := env.eng.ApplyStreamingFlag(func(uid string) bool { return uid != "alice" && uid != "mallory" }); moved != 1 {
		t.Fatalf("moved %d, want 1", moved)
	}
	f, err := alice.ReadFrame(ctx)
	if err != nil || f.Type != protocol.TypeTransport || f.Transport != TransportPoll || f.RetryMs < 5000 {
		t.Fatalf("alice: %+v %v, want a transport frame", f, err)
	}
	_, err = alice.ReadFrame(ctx)
	if code := rtclient.CloseCode(err); code != protocol.CloseUsePoll || protocol.RetryHint(rtclient.CloseReason(err)) != f.RetryMs {
		t.Fatalf("alice close: %d %q, want 4300 retry=%d", code, rtclient.CloseReason(err), f.RetryMs)
	}
	// Bob stays.
	env.publish(&protocol.Event{ID: "still-bob", Channel: "a"})
	evs, _ := readEvents(t, ctx, bob, 1)
	if evs[0].ID != "still-bob" {
		t.Fatalf("bob got %+v", evs)
	}

	// Alice polls: transport "poll" with a probe hint.
	q := pollQuery("a", nil, "")
	q.Set("token", "alice")
	r := env.mustPoll(q, nil)
	if r.resp.Transport != TransportPoll || r.resp.RetryMs < 5000 || r.resp.RetryMs > 10000 {
		t.Fatalf("alice poll: transport %q retryMs %d", r.resp.Transport, r.resp.RetryMs)
	}
	// A waiting poll of alice answers "stream" soon after streaming is allowed again.
	cur := r.resp.Cursor
	q = pollQuery("a", &cur, "20s")
	q.Set("token", "alice")
	done := make(chan *pollResult, 1)
	go func() {
		r, _ := env.doPoll(ctx, q, nil)
		done <- r
	}()
	testutil.WaitFor(t, "alice waiting", func() bool { return env.waiters() == 1 })
	flipped := time.Now()
	env.eng.ApplyStreamingFlag(nil)
	r = testutil.Receive(t, "alice's poll answer", done)
	d := time.Since(flipped)
	if r == nil || r.resp.Transport != TransportStream {
		t.Fatalf("after streaming is back: %+v after %v", r, d)
	}
	s := env.eng.Snapshot()
	if s.LongPollTimeouts != 0 { // told when the flag changed, not at its 20 s timeout
		t.Fatalf("alice's waiting poll was answered by its timeout (%d timeouts)", s.LongPollTimeouts)
	}
	t.Logf("waiting poll told to stream %v after the flip (spread 200ms)", d)
	if s.TransportSwitches["to_poll"] != 1 || s.TransportSwitches["refused"] != 1 || s.Disconnects["kicked"] != 1 {
		t.Fatalf("switches %v disconnects %v", s.TransportSwitches, s.Disconnects)
	}
	// Streaming for alice again.
	c := env.dial(ctx, &rtclient.DialOptions{Token: "alice", Channels: []string{"a"}})
	subscribedOK(t, ctx, c)

	// A poll sent just after streaming came back (the client was between two polls
	// when the waiting ones were woken) is answered "stream" without waiting.
	env.eng.ApplyStreamingFlag(func(uid string) bool { return uid != "carol" })
	env.eng.ApplyStreamingFlag(nil)
	q = pollQuery("a", &cur, "20s")
	q.Set("token", "carol")
	waits := env.eng.Snapshot().LongPollWaits
	r = env.mustPoll(q, nil)
	if w := env.eng.Snapshot().LongPollWaits; r.resp.Transport != TransportStream || w != waits {
		t.Fatalf("carol's poll after the flip: %q, waits %d -> %d, want stream without waiting", r.resp.Transport, waits, w)
	}
	// Bob was never refused: his poll waits as usual.
	q.Set("token", "bob")
	q.Set("timeout", "300ms")
	start := time.Now()
	if env.mustPoll(q, nil); time.Since(start) < 300*time.Millisecond {
		t.Fatalf("bob's poll answered after %v, want the 300ms timeout", time.Since(start))
	}
}

func subscribedOK(t testing.TB, ctx context.Context, c *rtclient.Conn) {
	t.Helper()
	f, err := c.ReadFrame(ctx)
	if err != nil || f.Type != protocol.TypeSubscribed || !f.Results[0].OK {
		t.Fatalf("subscribe answer %+v %v", f, err)
	}
}

// Shutdown answers waiting polls at once with 503 and a retry hint.
func TestPollDrain(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	head := env.mustPoll(pollQuery("a", nil, ""), nil).resp.Cursor
	ctx := testutil.Context(t)
	done := make(chan *pollResult, 1)
	go func() {
		r, _ := env.doPoll(ctx, pollQuery("a", &head, "20s"), nil)
		done <- r
	}()
	testutil.WaitFor(t, "a waiting poll", func() bool { return env.waiters() == 1 })
	if err := env.eng.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	r := testutil.Receive(t, "the waiting poll's answer", done)
	if r == nil || r.status != 503 || r.header.Get("Retry-After") == "" { // 503: the drain, not its 20 s timeout (200)
		t.Fatalf("poll during drain: %+v", r)
	}
	if r := env.mustPoll(pollQuery("a", &head, "1s"), nil); r.status != 503 {
		t.Fatalf("poll after drain: %d", r.status)
	}
}

// BenchmarkPollWake measures publish-to-answer latency of a waiting long-poll (the
// figure behind "wakes within 50 ms"). It reports ms/wake as a custom metric.
func BenchmarkPollWake(b *testing.B) {
	env := newEnv(b, Config{}, bus.Config{})
	ctx := context.Background()
	head := env.mustPoll(pollQuery("bench", nil, ""), nil).resp.Cursor
	var total, worst time.Duration
	for i := 0; i < b.N; i++ {
		done := make(chan time.Time, 1)
		var r *pollResult
		go func() {
			r, _ = env.doPoll(ctx, pollQuery("bench", &head, "20s"), nil)
			done <- time.Now()
		}()
		for env.waiters() == 0 {
			time.Sleep(100 * time.Microsecond)
		}
		t0 := time.Now()
		env.publish(&protocol.Event{ID: fmt.Sprintf("bench-%d", i), Channel: "bench"})
		at := <-done
		d := at.Sub(t0)
		total += d
		worst = max(worst, d)
		head = r.resp.Cursor
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/wake")
	b.ReportMetric(float64(worst.Microseconds())/1000, "max-ms")
}
