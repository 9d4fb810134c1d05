package server

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	natsserver "github.com/nats-io/nats-server/v2/server"

	"encore.app/internal/pgtest"
	"encore.app/internal/testutil"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// sharedNATS runs one nats-server with JetStream on 127.0.0.1 for instances to share.
func sharedNATS(t *testing.T) string {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns.ClientURL()
}

func adminGet(t *testing.T, u string) *goquery.Document {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	d, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Two instances on one bus: the console of either shows both instances' connections
// (asked over NATS request/reply, or over the Postgres bus's database with
// LISTEN/NOTIFY) and the fleet's busiest channels (from the health snapshots), and its
// test publish reaches a client on the other instance.
func TestConsoleAcrossTheFleet(t *testing.T) {
	t.Run("nats", func(t *testing.T) {
		natsURL := sharedNATS(t)
		consoleAcrossTheFleet(t, startServer(t, "-nats-url", natsURL), startServer(t, "-nats-url", natsURL))
	})
	t.Run("postgres", func(t *testing.T) {
		srv := pgtest.Start(t, pgtest.Options{})
		url := srv.DB(t)
		consoleAcrossTheFleet(t, startServer(t, "-postgres-url", url), startServer(t, "-postgres-url", url))
	})
}

func consoleAcrossTheFleet(t *testing.T, a, b *testServer) {
	ctx := testutil.Context(t)
	var sessions []string
	var onB *rtclient.Conn
	for _, ts := range []*testServer{a, b, b} {
		c, err := rtclient.Dial(ctx, "ws"+strings.TrimPrefix(ts.base, "http")+"/v2/realtime/stream", &rtclient.DialOptions{Channels: []string{"console.hot"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		sessions = append(sessions, c.Welcome.Session)
		onB = c
	}
	if err := onB.Send(ctx, &protocol.ClientFrame{Type: protocol.TypeHealth, Health: &protocol.HealthReport{RTTMillis: 17, Recoveries: 3}}); err != nil {
		t.Fatal(err)
	}

	// The inspector asks both instances: every anonymous connection, and one session.
	testutil.WaitFor(t, "both instances in the fleet", func() bool {
		return len(adminGet(t, a.base+"/dashboard").Find(`[data-testid="instance-row"]`).Nodes) == 2
	})
	d := adminGet(t, a.base+"/dashboard?user=anonymous")
	if got := d.Find(`[data-testid="inspect-summary"]`).Text(); got != "3 connections on 2 instances answering" {
		t.Fatalf("inspector summary %q", got)
	}
	testutil.WaitFor(t, "health report in the inspector", func() bool {
		d := adminGet(t, a.base+"/dashboard?user="+url.QueryEscape(sessions[2]))
		return d.Find(`[data-testid="inspect-row"]`).Length() == 1 && d.Find(`[data-testid="inspect-rtt"]`).Text() == "17 ms"
	})
	if d := adminGet(t, a.base+"/dashboard?user="+sessions[2]); d.Find(`[data-testid="inspect-row"]`).AttrOr("data-instance", "") != b.srv.Instance() {
		t.Fatalf("session %s not found on instance %s", sessions[2], b.srv.Instance())
	}

	// The busiest channels, summed over both instances' snapshots.
	testutil.WaitFor(t, "console.hot with 3 subscribers", func() bool {
		row := adminGet(t, b.base+"/dashboard").Find(`[data-testid="channel-row"][data-channel="console.hot"]`)
		return strings.TrimSpace(row.Find(`[data-testid="channel-subscribers"]`).Text()) == "3"
	})

	// A test publish on a (bearer) reaches the client on b.
	form := url.Values{"channel": {"console.hot"}, "type": {"ping"}, "data": {`{"from":"test"}`}}
	req, _ := http.NewRequest(http.MethodPost, a.base+"/dashboard/publish", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Bearer "+testAdminKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"seq":`) {
		t.Fatalf("publish: %d %s", resp.StatusCode, body)
	}
	for {
		f, err := onB.ReadFrame(ctx)
		if err != nil {
			t.Fatalf("waiting for the test event: %v", err)
		}
		if f.Type == protocol.TypeEvents && len(f.Events) == 1 && f.Events[0].Type == "ping" {
			break
		}
	}
	// Without the key the panels stay closed.
	plain, err := http.Get(a.base + "/dashboard?user=anonymous")
	if err != nil {
		t.Fatal(err)
	}
	pd, _ := goquery.NewDocumentFromReader(plain.Body)
	plain.Body.Close()
	if pd.Find(`[data-testid="inspector"]`).Length() != 0 || pd.Find(`[data-testid="login-form"]`).Length() != 1 {
		t.Fatal("admin panels without the key")
	}
}
