package stream

import (
	"fmt"
	"testing"

	"encore.app/internal/testutil"
	"encore.app/realtime/bus"
	"encore.app/realtime/protocol"
)

func TestTopChannelsAndConnections(t *testing.T) {
	env := newEnv(t, Config{}, bus.Config{})
	ctx := testutil.Context(t)
	// Three connections on "hot", two also on "warm", one on "cold".
	var sessions []string
	for i := 0; i < 3; i++ {
		c := env.dial(ctx, nil)
		sessions = append(sessions, c.Welcome.Session)
		chans := []string{"hot"}
		if i < 2 {
			chans = append(chans, "warm")
		}
		if i == 0 {
			chans = append(chans, "cold")
		}
		subscribe(t, ctx, c, nil, chans...)
		if i == 0 {
			report := &protocol.HealthReport{RTTMillis: 12, Recoveries: 2, Transport: "stream"}
			if err := c.Send(ctx, &protocol.ClientFrame{Type: protocol.TypeHealth, Health: report}); err != nil {
				t.Fatal(err)
			}
		}
	}
	top := env.eng.TopChannels(2)
	if top.Total != 3 || len(top.Top) != 2 || top.Top[0] != (ChannelCount{Channel: "hot", Subscribers: 3}) ||
		top.Top[1] != (ChannelCount{Channel: "warm", Subscribers: 2}) {
		t.Fatalf("top 2: %+v", top)
	}
	if all := env.eng.TopChannels(10); len(all.Top) != 3 || all.Top[2].Channel != "cold" {
		t.Fatalf("top 10: %+v", all)
	}
	if none := env.eng.TopChannels(0); none.Total != 3 || len(none.Top) != 0 {
		t.Fatalf("top 0: %+v", none)
	}

	// Anonymous connections match user ""; a session matches itself only.
	bySession := func(s string) func(string, string) bool { return func(_, sess string) bool { return sess == s } }
	testutil.WaitFor(t, "health report kept", func() bool {
		got, _ := env.eng.Connections(bySession(sessions[0]), 10)
		return len(got) == 1 && got[0].Health != nil
	})
	got, n := env.eng.Connections(bySession(sessions[0]), 10)
	c := got[0]
	if n != 1 || c.Transport != TransportStream || c.ChannelCount != 3 || fmt.Sprint(c.Channels) != "[cold hot warm]" ||
		c.Health.RTTMillis != 12 || c.Health.Recoveries != 2 || c.Since == 0 || c.HealthAt == 0 {
		t.Fatalf("session lookup: %d %+v", n, c)
	}
	all, n := env.eng.Connections(func(user, _ string) bool { return user == "" }, 2)
	if n != 3 || len(all) != 2 || all[0].Session != sessions[0] {
		t.Fatalf("anonymous lookup limited to 2: %d %+v", n, all)
	}
}

func TestChannelHeapKeepsLargest(t *testing.T) {
	h := &channelHeap{}
	for i := 0; i < 50; i++ {
		h.offer(ChannelCount{Channel: fmt.Sprintf("c%02d", i), Subscribers: i % 10}, 5)
	}
	for _, c := range *h {
		if c.Subscribers != 9 {
			t.Fatalf("kept %+v", c)
		}
	}
	if h.Len() != 5 {
		t.Fatalf("kept %d", h.Len())
	}
}

// BenchmarkTopChannels walks an index of 100,000 channels (one subscriber each): the
// time dispatch waits for the pool's lock once per health snapshot.
func BenchmarkTopChannels(b *testing.B) {
	e := &Engine{pool: newPool(1), lp: newLongPoll(&Config{}, &pollCounters{})}
	c := &Client{}
	for i := 0; i < 100_000; i++ {
		e.pool.index[fmt.Sprintf("user:%d:inbox", i)] = []sub{{c: c}}
	}
	for b.Loop() {
		e.TopChannels(20)
	}
}
