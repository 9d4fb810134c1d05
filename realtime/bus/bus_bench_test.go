package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"encore.app/internal/pgtest"
	"encore.app/realtime/bus"
	"encore.app/realtime/bus/bustest"
	"encore.app/realtime/protocol"
)

// BenchmarkPublishToDeliver compares the buses on the path the engine uses: three
// instances on one backend, each with one live subscription (what an engine runs),
// publishers on every instance. It reports the publish-to-deliver latency (from
// before Publish to the subscription's handler, over all three subscribers) and the
// delivered events per second.
//
//	go test -run '^$' -bench PublishToDeliver -benchtime 1x ./realtime/bus/
//
// "paced": 3 publishers x 10-event batches at 1,000 events/s in total for 5 s;
// "paced-single": the same rate as 30 publishers of one event each (an Encore
// subscription handler publishes each message on its own); "flood": 12 publishers x
// 10-event batches as fast as the bus acknowledges, 30,000 events; "flood-single":
// 96 publishers of one event each, 12,000 events. Postgres runs with fsync on (pgtest Durable); JetStream's file store syncs
// in the background (its default), so the figures favour it on durability.
func BenchmarkPublishToDeliver(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	backends := map[string]func(b *testing.B) func() bus.Bus{
		"jetstream": func(b *testing.B) func() bus.Bus {
			srv := bustest.Start(b)
			return func() bus.Bus {
				x, err := bus.NewJetStream(context.Background(), bus.Config{URL: srv.URL(), Logger: quiet})
				if err != nil {
					b.Fatal(err)
				}
				return x
			}
		},
		"postgres": func(b *testing.B) func() bus.Bus {
			pgtest.Need(b)
			srv, err := pgtest.New(pgtest.Options{Durable: os.Getenv("BUSBENCH_FSYNC_OFF") == ""})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(srv.Close)
			url, err := srv.NewDB(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			return func() bus.Bus {
				x, err := bus.OpenPostgres(context.Background(), url, bus.PostgresConfig{Logger: quiet})
				if err != nil {
					b.Fatal(err)
				}
				return x
			}
		},
	}
	for _, mode := range []struct {
		name       string
		publishers int
		batch      int
		events     int
		rate       float64 // events/s in total; 0: as fast as acked
	}{{"paced", 3, 10, 5000, 1000}, {"paced-single", 30, 1, 5000, 1000}, {"flood", 12, 10, 30000, 0}, {"flood-single", 96, 1, 12000, 0}} {
		for _, name := range []string{"jetstream", "postgres"} {
			b.Run(mode.name+"/"+name, func(b *testing.B) {
				open := backends[name](b)
				for b.Loop() {
					runPublishToDeliver(b, open, mode.publishers, mode.batch, mode.events, mode.rate)
				}
			})
		}
	}
}

func runPublishToDeliver(b *testing.B, open func() bus.Bus, publishers, batch, events int, rate float64) {
	b.StopTimer()
	ins := []bus.Bus{open(), open(), open()}
	defer func() {
		for _, x := range ins {
			_ = x.Close()
		}
	}()
	info, err := ins[0].Info(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	total := events / (publishers * batch) * publishers * batch
	var mu sync.Mutex
	var lat []time.Duration
	var delivered atomic.Int64
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, x := range ins {
		if err := x.Subscribe(ctx, info.LastSeq, func(ev *protocol.Event) {
			var d struct{ T int64 }
			if json.Unmarshal(ev.Data, &d) == nil {
				l := time.Since(time.Unix(0, d.T))
				mu.Lock()
				lat = append(lat, l)
				mu.Unlock()
			}
			if delivered.Add(1) == int64(3*total) {
				close(done)
			}
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.StartTimer()
	start := time.Now()
	var wg sync.WaitGroup
	per := total / publishers
	for p := range publishers {
		x := ins[p%len(ins)]
		wg.Go(func() {
			var interval time.Duration
			if rate > 0 {
				interval = time.Duration(float64(time.Second) * float64(batch*publishers) / rate)
			}
			next := time.Now()
			for i := 0; i < per; i += batch {
				if interval > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(interval)
				}
				evs := make([]*protocol.Event, batch)
				now := time.Now().UnixNano()
				for k := range evs {
					evs[k] = &protocol.Event{Channel: fmt.Sprint("room.", k%4), Type: "bench",
						Data: json.RawMessage(fmt.Sprintf(`{"t":%d,"pad":"%0100d"}`, now, i+k))}
				}
				if _, err := x.Publish(context.Background(), evs); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		b.Fatalf("delivered %d of %d", delivered.Load(), 3*total)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	mu.Lock()
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(p(0.5), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
	b.ReportMetric(float64(total)/elapsed.Seconds(), "published/s")
	b.ReportMetric(float64(3*total)/elapsed.Seconds(), "delivered/s")
	var txs uint64
	for _, x := range ins {
		if pg, ok := x.(*bus.Postgres); ok {
			txs += pg.Appends()
		}
	}
	if txs > 0 {
		b.ReportMetric(float64(total)/float64(txs), "events/tx")
	}
	mu.Unlock()
	b.StartTimer()
}
