package web

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/PuerkitoBio/goquery"
	"go.uber.org/goleak"

	"encore.app/dashboard/views"
	"encore.app/internal/testutil"
	"encore.app/monitoring/health"
	"encore.app/monitoring/savings"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, testutil.LeakOptions()...) }

// fleet is an Aggregator fed by hand, with a settable clock.
type fleet struct {
	mu  sync.Mutex
	now time.Time
	agg *health.Aggregator
	n   uint64
}

func newFleet(t *testing.T) (*fleet, *AggregatorSource) {
	t.Helper()
	f := &fleet{now: time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)}
	f.agg = health.NewAggregator(health.AggregatorOptions{Now: f.Now, TTL: time.Hour})
	src, err := NewAggregatorSource(f.agg, savings.DefaultPrices(), "", func() views.Flag {
		return views.Flag{Name: "realtime-streaming-v2", Known: true, Enabled: true}
	})
	if err != nil {
		t.Fatal(err)
	}
	return f, src
}

func (f *fleet) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// step advances 5 s and publishes an instance snapshot with conns connections and
// 100 more events delivered, then samples.
func (f *fleet) step(t *testing.T, conns uint64) {
	t.Helper()
	f.mu.Lock()
	f.now = f.now.Add(5 * time.Second)
	f.n++
	s := health.InstanceSnapshot{Instance: "host-a", Time: f.now.UnixMilli(), ActiveConnections: int64(conns),
		EventsDelivered: f.n * 100, FramesWritten: f.n * 50, BytesRaw: f.n * 10000, BytesWire: f.n * 3000}
	f.mu.Unlock()
	if err := f.agg.Put(s); err != nil {
		t.Fatal(err)
	}
	f.agg.Sample()
}

func get(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestPageStaticSnapshot(t *testing.T) {
	f, src := newFleet(t)
	f.step(t, 1500)
	f.step(t, 1500)
	h := New(src, Options{})
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp := get(t, srv.URL+"/dashboard")
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	doc, err := goquery.NewDocumentFromReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{
		"card-connections-value": "1,500",
		"card-events-value":      "20.0", // 100 events per 5 s
		"flag-state":             "on",
	} {
		if got := strings.TrimSpace(doc.Find(`[data-testid="` + id + `"]`).Text()); got != want {
			t.Errorf("%s = %q, want %q", id, got, want)
		}
	}
	if got := doc.Find("#live").AttrOr("data-events", ""); got != "/dashboard/events?range=5m" {
		t.Errorf("events URL %q", got)
	}
	if doc.Find(`[data-testid="instance-row"]`).Length() != 1 {
		t.Error("instance row missing")
	}

	post, err := http.Post(srv.URL+"/dashboard", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	if post.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST status %d", post.StatusCode)
	}
}

// readEvent reads one SSE event and returns its event name and joined data.
func readEvent(t *testing.T, r *bufio.Reader) (string, string) {
	t.Helper()
	var name string
	var data []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if name != "" || len(data) > 0 {
				return name, strings.Join(data, "\n")
			}
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		}
	}
}

func connectionsIn(t *testing.T, fragment string) string {
	t.Helper()
	doc, err := goquery.NewDocumentFromReader(strings.NewReader(fragment))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(doc.Find(`[data-testid="card-connections-value"]`).Text())
}

func TestEventsStreamUpdates(t *testing.T) {
	f, src := newFleet(t)
	f.step(t, 10)
	h := New(src, Options{Interval: 50 * time.Millisecond})
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.Close()

	req, _ := http.NewRequestWithContext(testutil.Context(t), http.MethodGet, srv.URL+"/dashboard/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	r := bufio.NewReader(resp.Body)
	name, data := readEvent(t, r)
	if name != "live" || connectionsIn(t, data) != "10" {
		t.Fatalf("first event %q connections %q", name, connectionsIn(t, data))
	}
	f.step(t, 777)
	for { // every 50 ms an event; the request's context bounds the wait
		_, data = readEvent(t, r)
		if connectionsIn(t, data) == "777" {
			break
		}
	}
	if h.Streams() != 1 {
		t.Errorf("streams %d, want 1", h.Streams())
	}
}

func TestEventsMaxStreams(t *testing.T) {
	_, src := newFleet(t)
	h := New(src, Options{Interval: time.Hour, MaxStreams: 1})
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.Close()

	first := get(t, srv.URL+"/dashboard/events")
	defer first.Body.Close()
	readEvent(t, bufio.NewReader(first.Body)) // the stream is open
	second := get(t, srv.URL+"/dashboard/events")
	second.Body.Close()
	if second.StatusCode != http.StatusServiceUnavailable || h.Refused() != 1 {
		t.Fatalf("second stream: status %d refused %d", second.StatusCode, h.Refused())
	}
}

func TestEventsEndOnCloseAndMaxDuration(t *testing.T) {
	_, src := newFleet(t)
	h := New(src, Options{Interval: 20 * time.Millisecond, MaxStreamDuration: 200 * time.Millisecond})
	srv := httptest.NewServer(h)
	defer srv.Close()

	// MaxStreamDuration ends the stream: the body reaches EOF.
	resp := get(t, srv.URL+"/dashboard/events")
	done := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, resp.Body); done <- err }()
	if err := testutil.Receive(t, "the stream to end at MaxStreamDuration", done); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	// Close ends open streams and refuses new ones.
	h2 := New(src, Options{Interval: 20 * time.Millisecond})
	srv2 := httptest.NewServer(h2)
	defer srv2.Close()
	resp = get(t, srv2.URL+"/dashboard/events")
	go func() { _, err := io.Copy(io.Discard, resp.Body); done <- err }()
	h2.Close()
	testutil.Receive(t, "the stream to end at Close", done)
	resp.Body.Close()
	again := get(t, srv2.URL+"/dashboard/events")
	again.Body.Close()
	if again.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("after Close: status %d", again.StatusCode)
	}
}

func TestAggregatorSourceRefusesBadPrices(t *testing.T) {
	p := savings.DefaultPrices()
	p.EgressPricePerGB = -1
	if _, err := NewAggregatorSource(health.NewAggregator(health.AggregatorOptions{}), p, "x", nil); err == nil {
		t.Fatal("negative price accepted")
	}
	src, err := NewAggregatorSource(health.NewAggregator(health.AggregatorOptions{}), savings.DefaultPrices(), "realtime-streaming-v2", nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := src.Snapshot(context.Background())
	if f := snap.Flag; f.Known || f.Name != "realtime-streaming-v2" || f.State() != "unknown" {
		t.Fatalf("default flag %+v", f)
	}
}

type failingSource struct{}

func (failingSource) Snapshot(context.Context) (Snapshot, error) {
	return Snapshot{}, errors.New("secret internal detail")
}

func TestSourceErrorsAreNotLeaked(t *testing.T) {
	h := New(failingSource{}, Options{Interval: time.Hour, Logger: testutil.Discard()})
	srv := httptest.NewServer(h)
	defer srv.Close()
	defer h.Close()

	resp := get(t, srv.URL+"/dashboard")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || strings.Contains(string(body), "secret") {
		t.Fatalf("page: status %d body %q", resp.StatusCode, body)
	}
	ev := get(t, srv.URL+"/dashboard/events")
	defer ev.Body.Close()
	name, data := readEvent(t, bufio.NewReader(ev.Body))
	if name != "unavailable" || strings.Contains(data, "secret") {
		t.Fatalf("event %q data %q", name, data)
	}
}
