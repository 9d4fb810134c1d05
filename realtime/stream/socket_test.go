package stream

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
	"encore.app/realtime/rtclient"
)

// maskedFrame is a client frame (fin, masked with the zero key) of a payload of at most
// 125 bytes.
func maskedFrame(op byte, payload []byte) []byte {
	return append([]byte{0x80 | op, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
}

// readRawFrame reads one unmasked server frame from br.
func readRawFrame(t *testing.T, br *bufio.Reader) (op byte, payload []byte) {
	t.Helper()
	head := make([]byte, 2, 10)
	if _, err := io.ReadFull(br, head); err != nil {
		t.Fatalf("frame header: %v", err)
	}
	switch head[1] & 0x7f {
	case 126:
		head = head[:4]
	case 127:
		head = head[:10]
	}
	if _, err := io.ReadFull(br, head[2:]); err != nil {
		t.Fatalf("frame length: %v", err)
	}
	n := uint64(head[1] & 0x7f)
	switch len(head) {
	case 4:
		n = uint64(binary.BigEndian.Uint16(head[2:]))
	case 10:
		n = binary.BigEndian.Uint64(head[2:])
	}
	frame := append(head, make([]byte, n)...)
	if _, err := io.ReadFull(br, frame[len(head):]); err != nil {
		t.Fatalf("frame payload: %v", err)
	}
	_, _, op, payload = parseServerFrame(t, frame)
	return op, payload
}

// A client may send its first frames right behind the upgrade request, in one write:
// the HTTP server then reads them along with the request, before the connection is
// hijacked. They are read first, in order: a WebSocket ping and a protocol ping sent
// that way are both answered. (They were lost once: the WebSocket library resets the
// reader it is handed to one over the socket, which skipped them, and the next header
// was read from the middle of a frame.)
func TestFramesSentWithTheUpgradeAreRead(t *testing.T) {
	env := newEnv(t, Config{HeartbeatInterval: time.Minute}, bus.Config{})
	u, err := url.Parse(env.url)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(testutil.Patience)) // a bound against a hang
	first := upgradeRequest(u)
	first = append(first, maskedFrame(0x9, []byte("sent-with-the-upgrade"))...)
	first = append(first, maskedFrame(0x1, protocol.Marshal(&protocol.ClientFrame{Type: protocol.TypePing, TS: 7}))...)
	if _, err := nc.Write(first); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	wsPong, pong := false, false
	for !wsPong || !pong {
		op, payload := readRawFrame(t, br)
		switch op {
		case 0xA:
			if string(payload) != "sent-with-the-upgrade" {
				t.Fatalf("pong %q, want the ping's payload", payload)
			}
			wsPong = true
		case 0x1:
			var f rtclient.Frame
			if err := json.Unmarshal(payload, &f); err != nil {
				t.Fatalf("server frame %q: %v", payload, err)
			}
			if f.Type == protocol.TypePong && f.TS == 7 {
				pong = true
			}
		case 0x8:
			t.Fatalf("closed: % x", payload)
		}
	}
	if d := env.eng.Snapshot().Disconnects[DiscReadError.String()]; d != 0 {
		t.Fatalf("%d read errors", d)
	}
}
