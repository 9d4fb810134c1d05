package main

import (
	"bytes"
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

// wellFormed parses b as XML and counts elements by name.
func wellFormed(t *testing.T, b []byte) map[string]int {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(b))
	n := map[string]int{}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return n
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b)
		}
		if se, ok := tok.(xml.StartElement); ok {
			n[se.Name.Local]++
		}
	}
}

func TestLineChart(t *testing.T) {
	b := LineChart(Chart{Title: "RSS <MiB> & heap", XLabel: "s", YLabel: "MiB"}, []Series{
		{Name: "rss", X: []float64{0, 1, 2}, Y: []float64{10, 12, 11}},
		{Name: "heap", X: []float64{0, 1, 2}, Y: []float64{5, 6, 5}},
	})
	n := wellFormed(t, b)
	if n["polyline"] != 2 || n["svg"] != 1 {
		t.Fatalf("elements %v", n)
	}
	if !strings.Contains(string(b), "RSS &lt;MiB&gt; &amp; heap") {
		t.Fatal("title not escaped")
	}
	// Empty and single-point input must not produce NaN coordinates.
	for _, s := range [][]Series{nil, {{Name: "one", X: []float64{3}, Y: []float64{0}}}} {
		out := LineChart(Chart{}, s)
		wellFormed(t, out)
		if bytes.Contains(out, []byte("NaN")) || bytes.Contains(out, []byte("Inf")) {
			t.Fatalf("bad coordinates: %s", out)
		}
	}
}

func TestBarChart(t *testing.T) {
	groups := []BarGroup{{Label: "off", Values: []float64{900, 1}}, {Label: "both", Values: []float64{120, 0}}}
	for _, logY := range []bool{false, true} {
		b := BarChart(Chart{Title: "bytes", LogY: logY}, []string{"bytes/event", "cpu"}, groups)
		n := wellFormed(t, b)
		if n["rect"] != 1+4+2 { // background, bars, legend
			t.Fatalf("logY=%v rects %d", logY, n["rect"])
		}
		if bytes.Contains(b, []byte("NaN")) {
			t.Fatalf("NaN in %s", b)
		}
	}
}

func TestNiceTicks(t *testing.T) {
	got := niceTicks(0, 97, 5)
	want := []float64{0, 20, 40, 60, 80, 100}
	if len(got) != len(want) {
		t.Fatalf("%v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%v", got)
		}
	}
}
