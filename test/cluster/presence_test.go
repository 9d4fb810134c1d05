package cluster

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
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"encore.app/internal/testutil"
	"encore.app/realtime/presence"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
	"encore.app/realtime/stream"
)

// presenceOpts configure an instance's presence tracker.
type presenceOpts struct {
	ttl, grace time.Duration
}

// presenceOf is an instance's tracker and its store (on NATS with the store's own
// connection; on Postgres on the bus's pool).
type presenceOf struct {
	tr   *presence.Tracker
	st   presence.Store
	nc   *nats.Conn // the NATS store's connection (nil on Postgres)
	once sync.Once
}

// startPresence starts a tracker for instance name on the cluster (its own connection,
// buckets with three replicas) and makes it ec's Presence. nil o: none.
func (c *natsCluster) startPresence(t testing.TB, name string, first int, o *presenceOpts, ec *stream.Config) *presenceOf {
	t.Helper()
	if o == nil {
		return nil
	}
	ctx := testutil.ContextWithin(t, settleBound) // bucket creation waits for the cluster to settle
	nc, err := nats.Connect(c.urls(first), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	p := &presenceOf{nc: nc}
	t.Cleanup(p.kill)
	// The buckets' creation goes through the meta leader: retry while the cluster settles.
	var st *presence.NATSStore
	for {
		st, err = presence.NewNATSStore(ctx, nc, presence.NATSConfig{TTL: o.ttl, Replicas: 3, Logger: quiet()})
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s: presence store: %v", name, err)
	}
	p.st = st
	p.startTracker(t, ctx, name, o, ec)
	return p
}

// startPostgresPresence starts a tracker for instance name on a Postgres store on
// pool (the bus's, as the server does) and makes it ec's Presence. nil o: none.
func startPostgresPresence(t testing.TB, name string, pool *pgxpool.Pool, o *presenceOpts, ec *stream.Config) *presenceOf {
	t.Helper()
	if o == nil {
		return nil
	}
	ctx := testutil.Context(t)
	st, err := presence.NewPostgresStore(ctx, pool, presence.PostgresConfig{TTL: o.ttl, Logger: quiet()})
	if err != nil {
		t.Fatalf("%s: presence store: %v", name, err)
	}
	p := &presenceOf{st: st}
	t.Cleanup(p.kill)
	p.startTracker(t, ctx, name, o, ec)
	return p
}

// startTracker starts name's tracker on p.st and makes it ec's Presence.
func (p *presenceOf) startTracker(t testing.TB, ctx context.Context, name string, o *presenceOpts, ec *stream.Config) {
	t.Helper()
	var err error
	p.tr, err = presence.New(presence.Config{Instance: name, Store: p.st, TTL: o.ttl, Grace: o.grace, Logger: quiet()})
	if err == nil {
		err = p.tr.Start(ctx)
	}
	if err != nil {
		t.Fatalf("%s: presence: %v", name, err)
	}
	ec.Presence = p.tr
}

// kill stops the tracker as a crash would: no more heartbeats or writes.
func (p *presenceOf) kill() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		if p.tr != nil {
			p.tr.Close()
		}
		if p.st != nil {
			p.st.Close()
		}
		if p.nc != nil {
			p.nc.Close()
		}
	})
}

// tokenUser: the token is the user id; "secret." channels are nobody's, "user:<id>:"
// ones only their user's.
func tokenUser(r *http.Request) (*stream.Identity, error) {
	return &stream.Identity{UserID: r.URL.Query().Get("token")}, nil
}

func privateRule(id *stream.Identity, ch string) error {
	if strings.HasPrefix(ch, "secret.") {
		return errors.New("secret")
	}
	if rest, ok := strings.CutPrefix(ch, "user:"); ok && (id.UserID == "" || !strings.HasPrefix(rest, id.UserID+":")) {
		return errors.New("private channel")
	}
	return nil
}

// watcher is a connection that subscribed to a channel with presence and records the
// diffs it gets, as "+user" and "-user".
type watcher struct {
	conn *rtclient.Conn
	mu   sync.Mutex
	seen []string
	at   []time.Time
	done chan struct{}
}

func watch(t *testing.T, ctx context.Context, in *instance, user, channel string) *watcher {
	t.Helper()
	conn, err := rtclient.Dial(ctx, in.ws, &rtclient.DialOptions{Token: user})
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{conn: conn, done: make(chan struct{})}
	if err := conn.SubscribePresence(ctx, "w", []string{channel}, nil); err != nil {
		t.Fatal(err)
	}
	// A snapshot after the subscribe answer: the diffs that follow it are every
	// change from then on (the client's recipe, docs/protocol.md "Presence").
	if err := conn.RequestPresence(ctx, "p", channel, 0); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := conn.ReadFrame(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == protocol.TypePresence {
			break
		}
	}
	go func() {
		defer close(w.done)
		for {
			f, err := conn.ReadFrame(ctx)
			if err != nil {
				return
			}
			if f.Type != protocol.TypePresenceDiff || f.Channel != channel {
				continue
			}
			now := time.Now()
			w.mu.Lock()
			for _, u := range f.Joins {
				w.seen, w.at = append(w.seen, "+"+u), append(w.at, now)
			}
			for _, u := range f.Leaves {
				w.seen, w.at = append(w.seen, "-"+u), append(w.at, now)
			}
			w.mu.Unlock()
		}
	}()
	t.Cleanup(func() { conn.CloseNow(); <-w.done })
	return w
}

func (w *watcher) has(word string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Contains(w.seen, word)
}

func (w *watcher) count(word string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, s := range w.seen {
		if s == word {
			n++
		}
	}
	return n
}

// member connects user to in, subscribed to channels.
func member(t *testing.T, ctx context.Context, in *instance, user string, channels ...string) *rtclient.Conn {
	t.Helper()
	c, err := rtclient.Dial(ctx, in.ws, &rtclient.DialOptions{Token: user, Channels: channels})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

func snapshotOn(t *testing.T, in *instance, user, channel string) (int, *protocol.PresenceSnapshot) {
	t.Helper()
	resp, err := http.Get(in.srv.URL + "/v2/realtime/presence?" + url.Values{"channel": {channel}, "token": {user}}.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var s protocol.PresenceSnapshot
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	return resp.StatusCode, &s
}

// Three instances on a three-node cluster: the presence scenario (presenceThree).
func TestPresenceThreeInstances(t *testing.T) {
	t.Parallel()
	ctx := testutil.ContextWithin(t, testBound)
	cl := startCluster(t, 3)
	var ins []*instance
	for i := range 3 {
		ins = append(ins, cl.startInstance(t, fmt.Sprintf("inst-%d", i), i, presenceInstance))
	}
	presenceThree(t, ctx, ins)
}

// presenceInstance is the instance options of the presence scenario: a tracker
// (dead instances lapse after 2 s, a 5 s grace), the token is the user id.
var presenceInstance = instanceOpts{presence: &presenceOpts{ttl: 2 * time.Second, grace: 5 * time.Second},
	engine: stream.Config{Authenticate: tokenUser, Authorize: privateRule}}

// presenceThree is the presence scenario on three instances of any bus: every join
// and leave is seen by the watchers of every instance, exactly once; a user who moves
// to another instance within the grace period announces nothing; a killed instance's
// members lapse from every view without anything withdrawn; snapshots agree; private
// channels answer only their user.
func presenceThree(t *testing.T, ctx context.Context, ins []*instance) {
	t.Helper()
	var ws []*watcher
	for i, in := range ins {
		ws = append(ws, watch(t, ctx, in, fmt.Sprintf("w%d", i), "room"))
	}
	waitAll := func(what string, words ...string) {
		t.Helper()
		deadline := time.Now().Add(testutil.Patience)
		for {
			missing := ""
			for i, w := range ws {
				for _, word := range words {
					if !w.has(word) && missing == "" {
						missing = fmt.Sprintf("watcher %d lacks %s", i, word)
					}
				}
			}
			if missing == "" {
				return
			}
			if time.Now().After(deadline) {
				for i, w := range ws {
					w.mu.Lock()
					t.Logf("watcher %d saw %v", i, w.seen)
					w.mu.Unlock()
				}
				for _, in := range ins {
					if in.pres != nil {
						t.Logf("%s: %+v", in.name, in.pres.tr.Stats())
					}
				}
				t.Fatalf("waiting for %s: %s", what, missing)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	testutil.WaitFor(t, "the joins of the watchers started later", func() bool {
		return ws[0].has("+w1") && ws[0].has("+w2") && ws[1].has("+w2")
	})

	// Members on every instance; u3 has a tab on two instances.
	var conns []*rtclient.Conn
	for i := range 6 {
		conns = append(conns, member(t, ctx, ins[i%3], fmt.Sprintf("u%d", i), "room"))
	}
	member(t, ctx, ins[1], "u3", "room")
	waitAll("every join on every instance", "+u0", "+u1", "+u2", "+u3", "+u4", "+u5")
	// Connection counts follow within the count delay: wait for them.
	for _, in := range ins {
		testutil.WaitFor(t, in.name+"'s snapshot of 9 users on 10 connections", func() bool {
			st, s := snapshotOn(t, in, "x", "room")
			return st == 200 && s.Users == 9 && s.Conns == 10
		})
	}

	// u0 moves from inst-0 to inst-1 within the grace period; u4 leaves for good.
	conns[0].CloseNow()
	member(t, ctx, ins[1], "u0", "room")
	conns[4].CloseNow()
	waitAll("u4's leave", "-u4")
	for i, w := range ws {
		if w.count("+u0") != 1 || w.has("-u0") || w.count("-u4") != 1 {
			t.Fatalf("watcher %d: %v", i, w.seen)
		}
	}

	// inst-2 dies: its members (w2, u2, u5) lapse from the others' views; u3 stays
	// (a tab on inst-1).
	ins[2].kill()
	ws = ws[:2]
	waitAll("inst-2's members to lapse", "-w2", "-u2", "-u5")
	for i, w := range ws {
		if w.has("-u3") {
			t.Fatalf("watcher %d: u3 left although it has a tab on inst-1: %v", i, w.seen)
		}
	}
	for _, in := range ins[:2] {
		st, s := snapshotOn(t, in, "x", "room")
		if st != 200 || s.Users != 5 { // w0 w1 u0 u1 u3
			t.Fatalf("snapshot on %s after the kill: %d %+v", in.name, st, s)
		}
	}

	// A private channel: presence answers only its user, on every instance.
	member(t, ctx, ins[0], "42", "user:42:inbox")
	testutil.WaitFor(t, "42's own presence on inst-1", func() bool {
		st, s := snapshotOn(t, ins[1], "42", "user:42:inbox")
		return st == 200 && s.Users == 1
	})
	if st, _ := snapshotOn(t, ins[1], "7", "user:42:inbox"); st != 403 {
		t.Fatalf("another user's private channel: %d", st)
	}
	if st, _ := snapshotOn(t, ins[0], "7", "secret.x"); st != 403 {
		t.Fatalf("a forbidden channel: %d", st)
	}
}
