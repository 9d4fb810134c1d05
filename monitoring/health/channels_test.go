package health

import (
	"testing"
	"time"

	"encore.app/realtime/protocol"
	"encore.app/realtime/stream"
)

func TestTopChannelsMergesInstances(t *testing.T) {
	clk := newFakeClock()
	a := NewAggregator(AggregatorOptions{Now: clk.Now})
	sa := snap("a", clk.Now(), 5, 0, 0)
	sa.Channels = &stream.ChannelTop{Total: 2, Top: []stream.ChannelCount{{Channel: "hot", Subscribers: 4}, {Channel: "cold", Subscribers: 1}}}
	sb := snap("b", clk.Now(), 5, 0, 0)
	// b lists 2 of its 3 channels: "cold" may have one more subscriber there.
	sb.Channels = &stream.ChannelTop{Total: 3, Top: []stream.ChannelCount{{Channel: "hot", Subscribers: 3, Polls: 1}, {Channel: "warm", Subscribers: 2}}}
	sc := snap("old-version", clk.Now(), 1, 0, 0) // lists nothing
	for _, s := range []InstanceSnapshot{sa, sb, sc} {
		mustPut(t, a, s)
	}
	v := a.TopChannels(10)
	if v.Reporting != 2 || v.MaxTotal != 3 || len(v.Rows) != 3 {
		t.Fatalf("view %+v", v)
	}
	want := []ChannelRow{
		{Channel: "hot", Subscribers: 7, Polls: 1, Instances: 2, Exact: true},
		{Channel: "warm", Subscribers: 2, Instances: 1, Exact: true},
		{Channel: "cold", Subscribers: 1, Instances: 1, Exact: false},
	}
	for i, w := range want {
		if v.Rows[i] != w {
			t.Errorf("row %d = %+v, want %+v", i, v.Rows[i], w)
		}
	}
	if got := a.TopChannels(1); len(got.Rows) != 1 || got.Rows[0].Channel != "hot" {
		t.Fatalf("top 1: %+v", got.Rows)
	}
	bad := snap("d", clk.Now(), 0, 0, 0)
	bad.Channels = &stream.ChannelTop{Top: []stream.ChannelCount{{Channel: ""}}}
	if err := a.Put(bad); err == nil {
		t.Fatal("channel without a name accepted")
	}
}

func TestDepartedAndStale(t *testing.T) {
	clk := newFakeClock()
	a := NewAggregator(AggregatorOptions{Now: clk.Now, TTL: 15 * time.Second})
	mustPut(t, a, snap("quiet", clk.Now(), 1, 0, 0))
	mustPut(t, a, snap("leaving", clk.Now(), 1, 0, 0))
	clk.Advance(10 * time.Second)
	mustPut(t, a, snap("leaving", clk.Now(), 1, 0, 0))
	ov := a.Overview()
	if !ov.InstanceRows[1].Stale || ov.InstanceRows[1].Instance != "quiet" || ov.InstanceRows[0].Stale {
		t.Fatalf("rows %+v", ov.InstanceRows)
	}
	a.RemoveFor(Key("leaving"), DepartShutdown)
	clk.Advance(5 * time.Second) // quiet reaches the TTL
	ov = a.Overview()
	if ov.Instances != 0 || len(ov.Departed) != 2 || ov.Departed[0].Reason != DepartShutdown || ov.Departed[1] !=
		(Departure{Instance: "quiet", At: clk.Now().UnixMilli(), LastSeen: clk.Now().Add(-15 * time.Second).UnixMilli(), Reason: DepartExpired}) {
		t.Fatalf("departed %+v", ov.Departed)
	}
	mustPut(t, a, snap("quiet", clk.Now(), 1, 0, 0)) // back: no longer departed
	clk.Advance(11 * time.Minute)
	mustPut(t, a, snap("quiet", clk.Now(), 1, 0, 0))
	if d := a.Overview().Departed; len(d) != 0 {
		t.Fatalf("departed after return and 11 min: %+v", d)
	}
}

func TestClientHealthSkipsUnmeasuredLatency(t *testing.T) {
	c := NewClientHealth(time.Minute, 6, nil)
	c.Observe(&protocol.HealthReport{RTTMillis: 3}) // a fresh tab: no events yet
	s := c.Summary()
	if s.RTT.Summary().Count != 1 || s.LatencyP50.Summary().Count != 0 || s.LatencyP99.Summary().Count != 0 {
		t.Fatalf("fresh tab recorded latency: rtt %d p50 %d", s.RTT.Summary().Count, s.LatencyP50.Summary().Count)
	}
	c.Observe(&protocol.HealthReport{RTTMillis: 3, EventsReceived: 1}) // 0 ms measured
	if n := c.Summary().LatencyP50.Summary().Count; n != 1 {
		t.Fatalf("measured latency not recorded: %d", n)
	}
}
