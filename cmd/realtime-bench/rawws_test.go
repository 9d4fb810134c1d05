package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
)

func frame(fin bool, op byte, p []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch {
	case len(p) < 126:
		out = append(out, byte(len(p)))
	case len(p) < 1<<16:
		out = append(out, 126, byte(len(p)>>8), byte(len(p)))
	default:
		out = append(out, 127, 0, 0, 0, 0, byte(len(p)>>24), byte(len(p)>>16), byte(len(p)>>8), byte(len(p)))
	}
	return append(out, p...)
}

// rawOver returns a rawConn reading in, whose writes go to a pipe the test can read.
func rawOver(t *testing.T, in []byte, bufSize int) (*rawConn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return &rawConn{nc: a, br: bufio.NewReaderSize(bytes.NewReader(in), bufSize)}, b
}

func TestRawConnMessages(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 70000) // larger than the buffer and than 64 KiB
	var in []byte
	in = append(in, frame(true, 1, []byte(`{"type":"events"}`))...)
	in = append(in, frame(false, 1, []byte(`{"a":`))...)
	in = append(in, frame(true, 0, []byte(`1}`))...)
	in = append(in, frame(true, 1, big)...)
	in = append(in, frame(true, 8, []byte{0x03, 0xe8})...)
	c, peer := rawOver(t, in, 4096)
	go func() { _, _ = io.Copy(io.Discard, peer) }() // the close answer
	var got []string
	for {
		err := c.next(func(b []byte) { got = append(got, string(b)) })
		var ce errClosed
		if errors.As(err, &ce) {
			if ce.code != 1000 {
				t.Fatalf("close code %d", ce.code)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 3 || got[0] != `{"type":"events"}` || got[1] != `{"a":1}` || got[2] != string(big) {
		t.Fatalf("got %d messages: %.40q", len(got), got)
	}
}

func TestRawConnAnswersPing(t *testing.T) {
	c, peer := rawOver(t, append(frame(true, 9, []byte("hi")), frame(true, 1, []byte("m"))...), 4096)
	pong := make(chan []byte, 1)
	go func() {
		b := make([]byte, 8)
		n, _ := io.ReadFull(peer, b)
		pong <- b[:n]
	}()
	var msg string
	if err := c.next(func(b []byte) { msg = string(b) }); err != nil || msg != "m" {
		t.Fatalf("next: %v %q", err, msg)
	}
	p := <-pong
	if p[0] != 0x8a || p[1] != 0x80|2 { // FIN+pong, masked, 2 bytes
		t.Fatalf("pong header % x", p[:2])
	}
	if got := []byte{p[6] ^ p[2], p[7] ^ p[3]}; string(got) != "hi" {
		t.Fatalf("pong payload %q", got)
	}
}

func TestRawConnRefuses(t *testing.T) {
	cases := map[string][]byte{
		"masked":    {0x81, 0x81, 1, 2, 3, 4, 'x'},
		"oversized": {0x81, 127, 0, 0, 0, 0, 0x10, 0, 0, 0},
		"truncated": {0x81, 10, 'a'},
	}
	for name, in := range cases {
		c, _ := rawOver(t, in, 4096)
		err := c.next(func([]byte) { t.Fatalf("%s: message delivered", name) })
		if err == nil || (name != "truncated" && !strings.Contains(err.Error(), map[string]string{"masked": "masked", "oversized": "bytes"}[name])) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func FuzzRawConn(f *testing.F) {
	f.Add(frame(true, 1, []byte("hello")))
	f.Add(append(frame(false, 1, []byte("a")), frame(true, 0, []byte("b"))...))
	f.Add(frame(true, 9, []byte("p")))
	f.Add([]byte{0x81, 127, 0xff, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		go func() { _, _ = io.Copy(io.Discard, b) }()
		c := &rawConn{nc: a, br: bufio.NewReaderSize(bytes.NewReader(in), 64)}
		for i := 0; i < 100; i++ {
			if c.next(func([]byte) {}) != nil {
				return
			}
		}
	})
}
