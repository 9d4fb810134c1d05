package main

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"encore.app/realtime/protocol"
)

func TestScanEvents(t *testing.T) {
	enc := [][]byte{
		protocol.EncodeEvent(&protocol.Event{ID: "a", Seq: 7, Channel: "c1", Data: []byte(`{"t":1764222000123456789,"seqs":"\"ts\":x","p":"zz"}`), TS: 1764222000124}),
		protocol.EncodeEvent(&protocol.Event{ID: "b", Seq: 9, Channel: "c2", Type: "x", TS: 1764222000125}), // no data
		protocol.EncodeEvent(&protocol.Event{ID: "c", Seq: 12, Channel: "c1", Data: []byte(`{"t":5}`), TS: 3}),
	}
	frame := protocol.AppendEventsFrame(nil, enc)
	if kindOf(frame) != frameEvents {
		t.Fatalf("kind %v", kindOf(frame))
	}
	var got []scannedEvent
	n := scanEvents(frame, func(e scannedEvent) { got = append(got, e) })
	want := []scannedEvent{{7, 1764222000123456789, 1764222000124}, {9, 0, 1764222000125}, {12, 5, 3}}
	if n != len(want) {
		t.Fatalf("n=%d, got %+v", n, got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d: got %+v want %+v", i, got[i], want[i])
		}
	}
}

func TestScanPollAnswer(t *testing.T) {
	body := []byte(`{"events":[{"id":"a","seq":5,"channel":"c","data":{"t":9},"ts":11},{"id":"b","seq":6,"channel":"c","data":{"t":10},"ts":12}],` +
		`"cursor":{"seq":6,"epoch":"e"},"transport":"stream","retryMs":0,"padding":"` + strings.Repeat("x", 100) + `"}`)
	var got []scannedEvent
	scanEvents(body, func(e scannedEvent) { got = append(got, e) })
	if len(got) != 2 || got[0] != (scannedEvent{5, 9, 11}) || got[1] != (scannedEvent{6, 10, 12}) {
		t.Fatalf("got %+v", got)
	}
}

func TestFrameKinds(t *testing.T) {
	cases := map[string]frameKind{
		`{"type":"ping","ts":1}`:             framePing,
		`{"type":"subscribed","results":[]}`: frameSubscribed,
		`{"type":"events","events":[]}`:      frameEvents,
		`{"type":"welcome"}`:                 frameOther,
		``:                                   frameOther,
	}
	for in, want := range cases {
		if got := kindOf([]byte(in)); got != want {
			t.Errorf("%q: %v want %v", in, got, want)
		}
	}
}

func FuzzScanEvents(f *testing.F) {
	f.Add([]byte(`{"type":"events","events":[{"id":"a","seq":1,"channel":"c","data":{"t":2},"ts":3}]}`))
	f.Add([]byte(`"seq":`))
	f.Add([]byte(`"seq":1"ts":`))
	f.Add([]byte(`"seq":99999999999999999999999"data":{"t":"ts":`))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := scanEvents(b, func(scannedEvent) {})
		if n < 0 || n > len(b) {
			t.Fatalf("n=%d", n)
		}
	})
}

func BenchmarkScanEvents(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	var enc [][]byte
	for i := 0; i < 40; i++ {
		data := appendPayload(nil, 220, uint64(i), 1764222000123456789, r)
		enc = append(enc, protocol.EncodeEvent(&protocol.Event{ID: "lq2k3v9x-" + strconv.Itoa(i), Seq: uint64(1000 + i), Channel: "bench.0", Type: "order", Data: data, TS: 1764222000124}))
	}
	frame := protocol.AppendEventsFrame(nil, enc)
	b.SetBytes(int64(len(frame)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if scanEvents(frame, func(scannedEvent) {}) != 40 {
			b.Fatal("count")
		}
	}
}
