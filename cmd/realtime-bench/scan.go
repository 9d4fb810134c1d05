package main

import (
	"bytes"
)

// Frame scanning without a JSON decode. The server writes events frames as
// {"type":"events","events":[E1,E2,...]} where each Ei is protocol.EncodeEvent's output:
// {"id":"..","seq":N,"channel":"..",["type":"..",]["data":{..},]"ts":T}. The bench's
// payloads start with {"t":<publisher send time, unix nanos>, and never contain an
// object starting with "id" nor the keys "seq" or "ts".

var (
	prefixEvents = []byte(`{"type":"events"`)
	prefixPing   = []byte(`{"type":"ping"`)
	prefixSubbed = []byte(`{"type":"subscribed"`)
	keyEvent     = []byte(`{"id":`)
	keySeq       = []byte(`"seq":`)
	keyData      = []byte(`"data":{"t":`)
	keyTS        = []byte(`"ts":`)
)

// frameKind classifies a server frame by its prefix.
type frameKind int

const (
	frameOther frameKind = iota
	frameEvents
	framePing
	frameSubscribed
)

func kindOf(b []byte) frameKind {
	switch {
	case bytes.HasPrefix(b, prefixEvents):
		return frameEvents
	case bytes.HasPrefix(b, prefixPing):
		return framePing
	case bytes.HasPrefix(b, prefixSubbed):
		return frameSubscribed
	}
	return frameOther
}

// scannedEvent is what the bench needs of one event.
type scannedEvent struct {
	Seq  uint64
	Sent int64 // publisher's send time from the payload, unix nanos; 0 if absent
	TS   int64 // server publish time, unix ms
}

// scanEvents calls fn for each event of an events frame (or of any JSON holding event
// objects in order, such as a poll answer's "events" array) and returns how many it
// found. Malformed input never panics; it stops at the first event it cannot read.
//
// Events are found by their opening `{"id":` (searching for '{' skips most of a JSON
// payload at once, where '"' would stop every few bytes); "seq" and the payload's "t"
// sit near the start, and "ts" is the last field before the next event.
func scanEvents(b []byte, fn func(scannedEvent)) int {
	n := 0
	i := bytes.Index(b, keyEvent)
	for i >= 0 {
		next := bytes.Index(b[i+len(keyEvent):], keyEvent)
		end := len(b)
		if next >= 0 {
			next += i + len(keyEvent)
			end = next
		}
		ev, ok := scanOne(b[i:end], next >= 0)
		if !ok {
			return n
		}
		fn(ev)
		n++
		i = next
	}
	return n
}

// scanOne reads one event object. When more events follow, e ends just after it (with
// ","), so "ts" is in its last bytes; the last event of a frame or poll answer may be
// followed by anything (a poll answer's cursor), so "ts" is searched forward.
func scanOne(e []byte, followed bool) (scannedEvent, bool) {
	var ev scannedEvent
	j := bytes.Index(e, keySeq)
	if j < 0 {
		return ev, false
	}
	seq, p, ok := parseUint(e, j+len(keySeq))
	if !ok {
		return ev, false
	}
	ev.Seq = seq
	var tsAt int
	if followed { // "ts":<13 digits>}, then ",": the last 48 bytes hold it
		w := max(p, len(e)-48)
		t := bytes.LastIndex(e[w:], keyTS)
		if t < 0 {
			return ev, false
		}
		tsAt = w + t
	} else {
		t := bytes.Index(e[p:], keyTS)
		if t < 0 {
			return ev, false
		}
		tsAt = p + t
	}
	// The payload's "t" follows channel and type (each at most 128 bytes).
	head := e[p:min(tsAt, p+320)]
	if d := bytes.Index(head, keyData); d >= 0 {
		if u, _, ok := parseUint(head, d+len(keyData)); ok {
			ev.Sent = int64(u)
		}
	}
	ts, _, ok := parseUint(e, tsAt+len(keyTS))
	if !ok {
		return ev, false
	}
	ev.TS = int64(ts)
	return ev, true
}

// parseUint reads decimal digits at b[i:] and returns the value and the index after them.
func parseUint(b []byte, i int) (uint64, int, bool) {
	start := i
	var v uint64
	for i < len(b) && b[i] >= '0' && b[i] <= '9' && i-start < 20 {
		v = v*10 + uint64(b[i]-'0')
		i++
	}
	return v, i, i > start
}
