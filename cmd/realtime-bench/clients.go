package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// wsClient is one raw stream connection. Its goroutine reads frames into a pooled
// buffer, scans events without decoding them, answers pings, and records sequences and
// latencies. Fields below mu are written by the goroutine and read after it ends (or
// through the atomics while it runs).
type wsClient struct {
	idx      int
	channels []int
	conn     *websocket.Conn // compressed runs
	raw      *rawConn        // uncompressed runs
	done     chan struct{}   // closed when the read goroutine returns

	received atomic.Uint64 // distinct events, for progress while running
	frames   atomic.Uint64

	// owned by the read goroutine until done
	seen     *seqSet
	lat      *latencies
	bytes    uint64
	closeErr error
}

// fleet is the set of clients of one run.
type fleet struct {
	t        *target
	channels []string
	compress bool
	// base is the first sequence of the run (set before publishing); events below are
	// ignored by the accounting. span bounds each client's bitmap.
	base   atomic.Uint64
	span   uint64
	warmUp atomic.Int64 // unix nanos: events sent before it are not timed
	// timeline, when set, records the worst latency of each second of the run.
	timeline *timeline
	// query, when set, adds to client i's stream URL (a token: "&token=...").
	query func(i int) string

	mu      sync.Mutex
	clients []*wsClient
	connect *latencies // dial to "subscribed"
	failed  int
	ctx     context.Context
	cancel  context.CancelFunc
}

func newFleet(t *target, channels []string, compress bool, span uint64) *fleet {
	ctx, cancel := context.WithCancel(context.Background())
	return &fleet{t: t, channels: channels, compress: compress, span: span, connect: newLatencies(), ctx: ctx, cancel: cancel}
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// dialOne opens a client subscribed to chans (indexes into f.channels) and starts its
// reader. It returns once the subscription is confirmed.
func (f *fleet) dialOne(ctx context.Context, idx int, chans []int) (*wsClient, error) {
	names := make([]string, len(chans))
	for i, ch := range chans {
		names[i] = f.channels[ch]
	}
	u := f.t.streamURL(idx) + "?channels=" + url.QueryEscape(strings.Join(names, ","))
	if f.query != nil {
		u += f.query(idx)
	}
	opts := &websocket.DialOptions{HTTPClient: dialHTTP}
	if f.compress {
		opts.CompressionMode = websocket.CompressionNoContextTakeover
	} else {
		opts.CompressionMode = websocket.CompressionDisabled
	}
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !f.compress {
		return f.dialRaw(dctx, u, idx, chans, start)
	}
	conn, resp, err := websocket.Dial(dctx, u, opts)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial: HTTP %d: %w", resp.StatusCode, err)
		}
		return nil, fmt.Errorf("dial: %w", err)
	}
	conn.SetReadLimit(32 << 20)
	// welcome, then subscribed
	for {
		_, b, err := conn.Read(dctx)
		if err != nil {
			conn.CloseNow()
			return nil, fmt.Errorf("before subscribed: %w", err)
		}
		if kindOf(b) == frameSubscribed {
			if !bytes.Contains(b, []byte(`"ok":true`)) {
				conn.CloseNow()
				return nil, fmt.Errorf("subscribe refused: %s", b)
			}
			break
		}
	}
	c := &wsClient{idx: idx, channels: chans, conn: conn, done: make(chan struct{}), lat: newLatencies()}
	f.mu.Lock()
	f.connect.recordNanos(start.UnixNano(), time.Now().UnixNano())
	f.clients = append(f.clients, c)
	f.mu.Unlock()
	go f.read(c)
	return c, nil
}

func (f *fleet) dialRaw(ctx context.Context, u string, idx int, chans []int, start time.Time) (*wsClient, error) {
	rc, err := rawDial(ctx, u, 16<<10)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	_ = rc.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	var subErr error
	for done := false; !done; {
		if err := rc.next(func(b []byte) {
			if kindOf(b) == frameSubscribed {
				done = true
				if !bytes.Contains(b, []byte(`"ok":true`)) {
					subErr = fmt.Errorf("subscribe refused: %s", b)
				}
			}
		}); err != nil {
			rc.closeNow()
			return nil, fmt.Errorf("before subscribed: %w", err)
		}
	}
	if subErr != nil {
		rc.closeNow()
		return nil, subErr
	}
	_ = rc.nc.SetReadDeadline(time.Time{})
	c := &wsClient{idx: idx, channels: chans, raw: rc, done: make(chan struct{}), lat: newLatencies()}
	f.mu.Lock()
	f.connect.recordNanos(start.UnixNano(), time.Now().UnixNano())
	f.clients = append(f.clients, c)
	f.mu.Unlock()
	go f.readRaw(c)
	return c, nil
}

func (f *fleet) readRaw(c *wsClient) {
	defer close(c.done)
	for {
		err := c.raw.next(func(b []byte) { f.handle(c, b, time.Now().UnixNano()) })
		if err != nil {
			c.closeErr = err
			c.raw.closeNow()
			return
		}
	}
}

// handle processes one text message of client c received at now.
func (f *fleet) handle(c *wsClient, b []byte, now int64) {
	c.bytes += uint64(len(b))
	c.frames.Add(1)
	switch kindOf(b) {
	case frameEvents:
		f.onEvents(c, b, now)
	case framePing:
		if ts, _, ok := parseUint(b, bytes.Index(b, keyTS)+len(keyTS)); ok {
			pong := strconv.AppendInt([]byte(`{"type":"pong","ts":`), int64(ts), 10)
			pong = append(pong, '}')
			if c.raw != nil {
				_ = c.raw.writeText(pong)
			} else {
				_ = c.conn.Write(f.ctx, websocket.MessageText, pong)
			}
		}
	}
}

// dialHTTP has no timeout (streams live long) and no connection reuse to worry about:
// upgraded connections are hijacked.
var dialHTTP = &http.Client{}

// dialAll opens n clients with at most conc dials in flight; client i subscribes to
// assign(i). It returns the time it took; failures are counted, not fatal.
func (f *fleet) dialAll(ctx context.Context, n, conc int, assign func(i int) []int) (time.Duration, error) {
	start := time.Now()
	sem := make(chan struct{}, max(conc, 1))
	var wg sync.WaitGroup
	var firstErr error
	var emu sync.Mutex
	f.mu.Lock()
	offset := len(f.clients) + f.failed
	f.mu.Unlock()
	for i := 0; i < n; i++ {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return time.Since(start), ctx.Err()
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := f.dialOne(ctx, offset+i, assign(offset+i)); err != nil {
				f.mu.Lock()
				f.failed++
				f.mu.Unlock()
				emu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				emu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	return time.Since(start), firstErr
}

func (f *fleet) read(c *wsClient) {
	defer close(c.done)
	ctx := f.ctx
	for {
		typ, r, err := c.conn.Reader(ctx)
		if err != nil {
			c.closeErr = err
			return
		}
		buf := bufPool.Get().(*bytes.Buffer)
		buf.Reset()
		_, err = buf.ReadFrom(r)
		if err != nil {
			bufPool.Put(buf)
			c.closeErr = err
			return
		}
		if typ == websocket.MessageText {
			f.handle(c, buf.Bytes(), time.Now().UnixNano())
		}
		if buf.Cap() <= 1<<20 {
			bufPool.Put(buf)
		}
	}
}

func (f *fleet) onEvents(c *wsClient, b []byte, now int64) {
	base := f.base.Load()
	if base == 0 {
		return // not a run event
	}
	if c.seen == nil {
		c.seen = newSeqSet(base, f.span)
	}
	warm := f.warmUp.Load()
	scanEvents(b, func(ev scannedEvent) {
		if ev.Seq < base {
			return
		}
		if c.seen.add(ev.Seq) {
			c.received.Add(1)
		}
		if ev.Sent >= warm && ev.Sent > 0 {
			c.lat.recordNanos(ev.Sent, now)
			if f.timeline != nil {
				f.timeline.record(ev.Sent, now)
			}
		} else if ev.Sent == 0 && ev.TS > 0 {
			c.lat.recordNanos(ev.TS*1e6, now)
		}
	})
}

// pick returns k distinct clients chosen at random (a partial Fisher-Yates shuffle of
// a copy of the list), so churn replaces exactly k connections.
func (f *fleet) pick(r *rand.Rand, k int) []*wsClient {
	f.mu.Lock()
	all := slices.Clone(f.clients)
	f.mu.Unlock()
	k = min(k, len(all))
	for i := 0; i < k; i++ {
		j := i + r.IntN(len(all)-i)
		all[i], all[j] = all[j], all[i]
	}
	return all[:k]
}

// remove closes c and forgets it (soak churn).
func (f *fleet) remove(c *wsClient) {
	c.close()
	f.cancelOne(c)
	f.mu.Lock()
	for i, x := range f.clients {
		if x == c {
			f.clients[i] = f.clients[len(f.clients)-1]
			f.clients = f.clients[:len(f.clients)-1]
			break
		}
	}
	f.mu.Unlock()
}

// cancelOne makes sure c's reader has ended.
func (f *fleet) cancelOne(c *wsClient) {
	select {
	case <-c.done:
	case <-time.After(3 * time.Second):
		if c.raw != nil {
			c.raw.closeNow()
		} else {
			c.conn.CloseNow()
		}
		<-c.done
	}
}

// received sums distinct events over the clients.
func (f *fleet) received() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	var n uint64
	for _, c := range f.clients {
		n += c.received.Load()
	}
	return n
}

// closeAll closes every client (normal close, concurrently) and waits for the readers.
func (f *fleet) closeAll() {
	f.mu.Lock()
	cs := f.clients
	f.mu.Unlock()
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	for _, c := range cs {
		sem <- struct{}{}
		wg.Add(1)
		go func(c *wsClient) {
			defer wg.Done()
			defer func() { <-sem }()
			c.close()
		}(c)
	}
	wg.Wait()
	f.cancel()
	for _, c := range cs {
		<-c.done
	}
}

func (c *wsClient) close() {
	if c.raw != nil {
		c.raw.closeNormal()
		select {
		case <-c.done:
		case <-time.After(2 * time.Second):
			c.raw.closeNow()
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	go func() {
		<-ctx.Done()
		c.conn.CloseNow()
	}()
	_ = c.conn.Close(websocket.StatusNormalClosure, "")
	select {
	case <-c.done:
	case <-ctx.Done():
	}
}

// tally merges latencies and accounts loss/dups against the ledger. Call after closeAll.
func (f *fleet) tally(l *ledger) (accounting, *latencies, int) {
	pub := map[int][]uint64{}
	for i := range f.channels {
		pub[i] = l.channel(i)
	}
	var acc accounting
	lat := newLatencies()
	unexpectedClose := 0
	for _, c := range f.clients {
		s := c.seen
		if s == nil {
			s = newSeqSet(f.base.Load(), 1)
		}
		acc.account(s, c.channels, pub)
		lat.merge(c.lat)
		var ce errClosed
		if errors.As(c.closeErr, &ce) {
			if ce.code != 1000 {
				unexpectedClose++
			}
		} else if c.closeErr != nil && c.raw == nil && !errors.Is(c.closeErr, context.Canceled) {
			code := websocket.CloseStatus(c.closeErr)
			if code != websocket.StatusNormalClosure && code != -1 {
				unexpectedClose++
			} else if code == -1 && !strings.Contains(c.closeErr.Error(), "closed") {
				unexpectedClose++
			}
		}
	}
	return acc, lat, unexpectedClose
}

// timeline is the worst publish-to-receive latency of each second since start (by send
// time). Safe for concurrent use.
type timeline struct {
	start int64 // unix nanos
	mu    sync.Mutex
	worst []float64 // ms, per second
}

func newTimeline(start time.Time) *timeline { return &timeline{start: start.UnixNano()} }

func (t *timeline) record(sent, recv int64) {
	sec := int((sent - t.start) / 1e9)
	if sec < 0 || sec > 3600 {
		return
	}
	ms := float64(recv-sent) / 1e6
	t.mu.Lock()
	for len(t.worst) <= sec {
		t.worst = append(t.worst, 0)
	}
	t.worst[sec] = max(t.worst[sec], ms)
	t.mu.Unlock()
}

func (t *timeline) seconds() []float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]float64(nil), t.worst...)
}
