package views

import (
	"math"
	"strconv"
	"strings"
	"time"

	"encore.app/monitoring/health"
)

// Chart geometry in SVG user units. The SVG stretches to its box (preserveAspectRatio
// none, strokes that do not scale), so the plot fills any width; the labels around it
// are HTML and stay readable on a phone.
const (
	chartWidth  = 600
	chartHeight = 120
	chartPad    = 2 // keeps a line at 0 or at the top visible
	// maxChartPoints bounds the points of one line: longer series are drawn in buckets,
	// each at its largest value (so a spike is never hidden).
	maxChartPoints = 240
)

// Chart is a line chart ready to draw.
type Chart struct {
	ID, Title, Unit string
	Lines           []Line
	YMax            float64
	YMaxLabel       string
	XStart, XEnd    string // labels of the range's start and end
	Empty           bool
	Label           string // the SVG's accessible name: title, range and latest values
}

// Line is one series of a chart.
type Line struct {
	Name   string
	Color  int    // 1..6: the palette entry (class c<n>)
	Dash   bool   // drawn dashed (server-side figures next to browser ones)
	Points string // SVG polyline points
	Last   string // latest value, formatted as the cards format it
}

type lineSpec struct {
	name  string
	color int
	dash  bool
	value func(health.Point) float64
	// known reports whether the point has a value for this line (nil: always); a
	// point without one is not drawn and the legend says "–".
	known func(health.Point) bool
}

// ViewBox is the SVG viewBox attribute.
func (Chart) ViewBox() string {
	return "0 0 " + strconv.Itoa(chartWidth) + " " + strconv.Itoa(chartHeight)
}

// MidY is the y of the half-way grid line.
func (Chart) MidY() string { return strconv.Itoa(chartHeight / 2) }

// W is the plot's width in SVG units.
func (Chart) W() string { return strconv.Itoa(chartWidth) }

// ColorClass is the line's palette class.
func (l Line) ColorClass() string { return "c" + strconv.Itoa(l.Color) }

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// buildChart lays out pts (oldest first, the last one "now") on the time axis
// [end-span, end].
func buildChart(id, title, unit string, pts []health.Point, end time.Time, span time.Duration, format func(float64) string, specs ...lineSpec) Chart {
	c := Chart{ID: id, Title: title, Unit: unit, Empty: len(pts) < 2}
	t1 := end.UnixMilli()
	t0 := t1 - span.Milliseconds()
	if span <= 0 {
		t0 = t1 - 1
	}
	var ymax float64
	for _, s := range specs {
		for _, p := range pts {
			if s.known == nil || s.known(p) {
				ymax = max(ymax, s.value(p))
			}
		}
	}
	c.YMax = niceMax(ymax)
	c.YMaxLabel = format(c.YMax)
	c.XStart, c.XEnd = spanLabel(span)+" ago", "now"
	plotH := float64(chartHeight - 2*chartPad)
	per := (len(pts) + maxChartPoints - 1) / maxChartPoints // points per bucket
	if per < 1 {
		per = 1
	}
	labels := []string{title, "last " + spanLabel(span)}
	for _, s := range specs {
		var b strings.Builder
		for i := 0; i < len(pts); i += per {
			bucket := pts[i:min(i+per, len(pts))]
			p := bucket[len(bucket)-1]
			v, any := 0.0, false
			for _, q := range bucket {
				if s.known == nil || s.known(q) {
					v, any = max(v, s.value(q)), true
				}
			}
			if !any {
				continue
			}
			if math.IsNaN(v) || v < 0 {
				v = 0
			}
			x := float64(chartWidth) * float64(min(max(p.T, t0), t1)-t0) / float64(t1-t0)
			y := float64(chartPad) + plotH*(1-math.Min(v, c.YMax)/c.YMax)
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.FormatFloat(x, 'f', 1, 64))
			b.WriteByte(',')
			b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
		}
		l := Line{Name: s.name, Color: s.color, Dash: s.dash, Points: b.String(), Last: "–"}
		if n := len(pts); n > 0 && (s.known == nil || s.known(pts[n-1])) {
			l.Last = format(s.value(pts[n-1]))
		}
		c.Lines = append(c.Lines, l)
		labels = append(labels, s.name+" "+l.Last)
	}
	c.Label = strings.Join(labels, ", ")
	return c
}

// spanLabel writes a range as "5 min" or "1 h".
func spanLabel(d time.Duration) string {
	if d >= time.Hour && d%time.Hour == 0 {
		return strconv.Itoa(int(d/time.Hour)) + " h"
	}
	return strconv.Itoa(int(d.Round(time.Minute)/time.Minute)) + " min"
}

// points is the series inside the model's range with the current overview appended
// as "now": the cards and the charts' latest values are the same numbers.
func (m Model) points() []health.Point {
	span := m.Range.Span
	if span <= 0 {
		span = Ranges[0].Span
	}
	now := health.PointOf(m.Overview)
	if now.T == 0 {
		now.T = m.Now.UnixMilli()
	}
	cut := now.T - span.Milliseconds()
	var pts []health.Point
	for _, p := range m.Series.Points {
		if p.T >= cut && p.T < now.T {
			pts = append(pts, p)
		}
	}
	return append(pts, now)
}

// end is the time axis' end: the current overview's time.
func (m Model) end() time.Time {
	if m.Overview.Time > 0 {
		return time.UnixMilli(m.Overview.Time)
	}
	return m.Now
}

func (m Model) span() time.Duration {
	if m.Range.Span <= 0 {
		return Ranges[0].Span
	}
	return m.Range.Span
}

// browser is "the point has browser-reported figures": before the first report the
// browser lines are not drawn and their legend says "–".
func browser(p health.Point) bool {
	return p.DeliveryP50Ms > 0 || p.DeliveryP99Ms > 0 || p.RTTP50Ms > 0
}

// Charts returns the dashboard's four charts over the model's range.
func (m Model) Charts() []Chart {
	pts, end, span := m.points(), m.end(), m.span()
	return []Chart{
		buildChart("chart-connections", "Connections", "open", pts, end, span, formatCountF,
			lineSpec{name: "connections", color: 1, value: func(p health.Point) float64 { return float64(p.Connections) }}),
		buildChart("chart-throughput", "Throughput", "per second", pts, end, span, formatRate,
			lineSpec{name: "delivered", color: 2, value: func(p health.Point) float64 { return p.EventsDeliveredPerSec }},
			lineSpec{name: "published", color: 3, value: func(p health.Point) float64 { return p.EventsPublishedPerSec }},
			lineSpec{name: "frames", color: 4, value: func(p health.Point) float64 { return p.FramesPerSec }},
			lineSpec{name: "drops", color: 5, value: func(p health.Point) float64 { return p.DropsPerSec }},
			lineSpec{name: "long-polls", color: 6, value: func(p health.Point) float64 { return p.LongPollPerSec }}),
		buildChart("chart-latency", "Latency", "ms", pts, end, span, formatMs,
			lineSpec{name: "delivery p50", color: 1, value: func(p health.Point) float64 { return p.DeliveryP50Ms }, known: browser},
			lineSpec{name: "delivery p99", color: 5, value: func(p health.Point) float64 { return p.DeliveryP99Ms }, known: browser},
			lineSpec{name: "write p50", color: 2, dash: true, value: func(p health.Point) float64 { return p.WriteP50Ms }},
			lineSpec{name: "write p99", color: 4, dash: true, value: func(p health.Point) float64 { return p.WriteP99Ms }},
			lineSpec{name: "rtt p50", color: 6, value: func(p health.Point) float64 { return p.RTTP50Ms }, known: browser}),
		buildChart("chart-bandwidth", "Bandwidth", "bytes/s", pts, end, span, formatBytes,
			lineSpec{name: "raw", color: 3, value: func(p health.Point) float64 { return p.BytesRawPerSec }},
			lineSpec{name: "wire", color: 2, value: func(p health.Point) float64 { return p.BytesWirePerSec }}),
	}
}

// Spark is a small line of one figure over the range, for the reason panels.
type Spark struct {
	Points string
	Now    string // the latest value, formatted
	Label  string
}

// spark draws value over the range in a 100x20 box.
func (m Model) spark(label string, value func(health.Point) float64, format func(float64) string) Spark {
	c := buildChart("", label, "", m.points(), m.end(), m.span(), format, lineSpec{name: label, value: value})
	// Rescale the chart's 600x120 plot into 100x20.
	var b strings.Builder
	for i, f := range strings.Fields(c.Lines[0].Points) {
		x, y, _ := strings.Cut(f, ",")
		xf, _ := strconv.ParseFloat(x, 64)
		yf, _ := strconv.ParseFloat(y, 64)
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatFloat(xf/6, 'f', 1, 64) + "," + strconv.FormatFloat(yf/6, 'f', 1, 64))
	}
	return Spark{Points: b.String(), Now: c.Lines[0].Last, Label: label + " over the last " + spanLabel(m.span()) + " (scale 0 to " + c.YMaxLabel + "), now " + c.Lines[0].Last}
}
