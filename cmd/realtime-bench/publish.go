package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// payload writes realistic JSON of about size bytes: an order-update document whose
// keys repeat from event to event and whose values vary (ids, prices, quantities, SKUs
// from a catalogue), like the application events the stream carries. The first field
// is "t", the publisher's send time in unix nanos, which receivers use for latency.
func appendPayload(dst []byte, size int, n uint64, sent int64, r *rand.Rand) []byte {
	start := len(dst)
	dst = append(dst, `{"t":`...)
	dst = strconv.AppendInt(dst, sent, 10)
	dst = append(dst, `,"kind":"order.updated","order":{"number":`...)
	dst = strconv.AppendUint(dst, 100000+n, 10)
	dst = append(dst, `,"status":"`...)
	dst = append(dst, statuses[r.IntN(len(statuses))]...)
	dst = append(dst, `","customer":"cust-`...)
	dst = strconv.AppendInt(dst, int64(r.IntN(90000)+10000), 10)
	dst = append(dst, `","currency":"EUR","items":[`...)
	for i := 0; ; i++ {
		if i > 0 {
			dst = append(dst, ',')
		}
		it := catalogue[r.IntN(len(catalogue))]
		dst = append(dst, `{"sku":"`...)
		dst = append(dst, it.sku...)
		dst = append(dst, `","name":"`...)
		dst = append(dst, it.name...)
		dst = append(dst, `","qty":`...)
		dst = strconv.AppendInt(dst, int64(r.IntN(5)+1), 10)
		dst = append(dst, `,"price":`...)
		dst = strconv.AppendFloat(dst, float64(r.IntN(20000))/100, 'f', 2, 64)
		dst = append(dst, '}')
		if len(dst)-start+40 >= size || i >= 200 {
			break
		}
	}
	dst = append(dst, `],"total":`...)
	dst = strconv.AppendFloat(dst, float64(r.IntN(100000))/100, 'f', 2, 64)
	return append(dst, "}}"...)
}

var statuses = []string{"created", "paid", "packed", "shipped", "delivered", "cancelled"}

type item struct{ sku, name string }

var catalogue = func() []item {
	adj := []string{"Blue", "Red", "Large", "Small", "Steel", "Wooden", "Organic", "Wireless"}
	noun := []string{"widget", "lamp", "chair", "mug", "charger", "notebook", "backpack", "kettle"}
	var out []item
	for i, a := range adj {
		for j, n := range noun {
			out = append(out, item{sku: "SKU-" + strconv.Itoa(10000+i*37+j*1013), name: a + " " + n})
		}
	}
	return out
}()

// publisher sends Rate events per second in paced batches through POST
// /v2/realtime/publish, round-robin over channels (and over instances), and records the
// acks in a ledger. A failed batch is retried with the same event ids (the bus appends
// an id once), so every event is eventually acked unless the run ends first.
type publisher struct {
	t        *target
	channels []string
	rate     int
	size     int
	workers  int
	interval time.Duration // pacing tick (default 10ms)
	maxBatch int           // events per request (default 500)
	runID    string
	led      *ledger

	requests atomic.Uint64
	errors   atomic.Uint64
	acked    atomic.Uint64
	// payloadBytes sums the data sizes of the events built (retries count once per build).
	payloadBytes atomic.Uint64
	built        atomic.Uint64
	lastErr      atomic.Pointer[string]
	reqLat       *latencies // request round trip
	mu           sync.Mutex
}

type pubJob struct {
	first, n uint64
}

func newPublisher(t *target, channels []string, rate, size int, led *ledger) *publisher {
	return &publisher{t: t, channels: channels, rate: rate, size: size, workers: 4,
		interval: 10 * time.Millisecond, maxBatch: 500, led: led, reqLat: newLatencies(),
		runID: strconv.FormatInt(time.Now().UnixNano(), 36)}
}

// run publishes for d (or until ctx ends) and waits for outstanding requests (retrying
// failures until ctx ends). It returns how long the paced phase lasted.
func (p *publisher) run(ctx context.Context, d time.Duration) time.Duration {
	jobs := make(chan pubJob, p.workers*4)
	var wg sync.WaitGroup
	for w := 0; w < p.workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			var body []byte
			for j := range jobs {
				body = p.send(ctx, j, w, body, r)
			}
		}(w)
	}
	start := time.Now()
	tick := time.NewTicker(p.interval)
	var sent uint64
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-tick.C:
			el := now.Sub(start)
			if el > d {
				el = d
			}
			due := uint64(float64(p.rate) * el.Seconds())
			for sent < due {
				n := min(due-sent, uint64(p.maxBatch))
				select {
				case jobs <- pubJob{first: sent, n: n}:
				case <-ctx.Done():
					break loop
				}
				sent += n
			}
			if el >= d {
				break loop
			}
		}
	}
	tick.Stop()
	paced := time.Since(start)
	close(jobs)
	wg.Wait()
	return paced
}

func (p *publisher) send(ctx context.Context, j pubJob, w int, body []byte, r *rand.Rand) []byte {
	body = body[:0]
	sentAt := time.Now().UnixNano()
	body = append(body, `{"events":[`...)
	for k := uint64(0); k < j.n; k++ {
		n := j.first + k
		if k > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"id":"`...)
		body = append(body, p.runID...)
		body = append(body, '-')
		body = strconv.AppendUint(body, n, 10)
		body = append(body, `","channel":"`...)
		body = append(body, p.channels[n%uint64(len(p.channels))]...)
		body = append(body, `","type":"order","data":`...)
		before := len(body)
		body = appendPayload(body, p.size, n, sentAt, r)
		p.payloadBytes.Add(uint64(len(body) - before))
		body = append(body, '}')
	}
	body = append(body, "]}"...)
	p.built.Add(j.n)
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		acks, err := p.post(ctx, w+attempt, body)
		if err == nil {
			for k, a := range acks {
				n := j.first + uint64(k)
				p.led.add(int(n%uint64(len(p.channels))), a.Seq)
			}
			p.acked.Add(uint64(len(acks)))
			return body
		}
		p.errors.Add(1)
		s := err.Error()
		p.lastErr.Store(&s)
		select {
		case <-ctx.Done():
			return body
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

type ackResp struct {
	Acks []struct {
		ID        string `json:"id"`
		Seq       uint64 `json:"seq"`
		Duplicate bool   `json:"duplicate"`
	} `json:"acks"`
}

// avgPayload is the mean size in bytes of the payloads sent.
func (p *publisher) avgPayload() float64 {
	if n := p.built.Load(); n > 0 {
		return float64(p.payloadBytes.Load()) / float64(n)
	}
	return 0
}

func (p *publisher) post(ctx context.Context, inst int, body []byte) ([]struct {
	ID        string `json:"id"`
	Seq       uint64 `json:"seq"`
	Duplicate bool   `json:"duplicate"`
}, error) {
	u := p.t.urls[inst%len(p.t.urls)] + "/v2/realtime/publish"
	req, err := http.NewRequestWithContext(ctx, "POST", u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+p.t.key)
	req.Header.Set("Content-Type", "application/json")
	start := time.Now()
	p.requests.Add(1)
	resp, err := p.t.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	rb, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("publish: HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(rb))
	}
	var ar ackResp
	if err := json.Unmarshal(rb, &ar); err != nil {
		return nil, fmt.Errorf("publish answer: %w", err)
	}
	p.mu.Lock()
	p.reqLat.recordNanos(start.UnixNano(), time.Now().UnixNano())
	p.mu.Unlock()
	return ar.Acks, nil
}
