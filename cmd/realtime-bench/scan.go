package main

import (
	"bytes"
)

// Frame scanning without a JSON decode. The server writes events frames as
// {"type":"events","events":[E1,E2,...]} where each Ei is protocol.EncodeEvent's output:
// {"id":"..","seq":N,"channel":"..",["type":"..",]["data":{..},]"ts":T}. The bench's
// payloads start with {"t":<publisher send time, unix nanos>, and never contain the
// keys "seq" or "ts", so three bytes.Index calls per event find what the bench needs.

var (
	prefixEvents = []byte(`{"type":"events"`)
	prefixPing   = []byte(`{"type":"ping"`)
	prefixSubbed = []byte(`{"type":"subscribed"`)
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
func scanEvents(b []byte, fn func(scannedEvent)) int {
	n := 0
	pos := 0
	for {
		i := bytes.Index(b[pos:], keySeq)
		if i < 0 {
			return n
		}
		pos += i + len(keySeq)
		var ev scannedEvent
		var ok bool
		var u uint64
		u, pos, ok = parseUint(b, pos)
		if !ok {
			return n
		}
		ev.Seq = u
		// "ts" ends the event; "data" (if ours) comes before it.
		t := bytes.Index(b[pos:], keyTS)
		if t < 0 {
			return n
		}
		tsAt := pos + t
		if d := bytes.Index(b[pos:tsAt], keyData); d >= 0 {
			if u, _, ok := parseUint(b, pos+d+len(keyData)); ok {
				ev.Sent = int64(u)
			}
		}
		u, pos, ok = parseUint(b, tsAt+len(keyTS))
		if !ok {
			return n
		}
		ev.TS = int64(u)
		fn(ev)
		n++
	}
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
