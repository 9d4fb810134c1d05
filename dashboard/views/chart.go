package views

import (
	"math"
	"strconv"
	"strings"
	"time"

	"encore.app/monitoring/health"
)

// Chart geometry in SVG user units.
const (
	chartWidth  = 600
	chartHeight = 160
	chartLeft   = 56 // room for y labels
	chartRight  = 8
	chartTop    = 8
	chartBottom = 20 // room for x labels
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
	XStart, XEnd    string // time labels of the first and last point
	Empty           bool
}

// Line is one series of a chart.
type Line struct {
	Name, Color string
	Points      string // SVG polyline points
	Last        string // latest value, formatted
}

type lineSpec struct {
	name, color string
	value       func(health.Point) float64
}

// ViewBox is the SVG viewBox attribute.
func (Chart) ViewBox() string {
	return "0 0 " + strconv.Itoa(chartWidth) + " " + strconv.Itoa(chartHeight)
}

// Axis coordinates used by the template.
func (Chart) X0() string      { return strconv.Itoa(chartLeft) }
func (Chart) X1() string      { return strconv.Itoa(chartWidth - chartRight) }
func (Chart) YTop() string    { return strconv.Itoa(chartTop) }
func (Chart) YBottom() string { return strconv.Itoa(chartHeight - chartBottom) }
func (Chart) YLabelX() string { return strconv.Itoa(chartLeft - 4) }
func (Chart) XLabelY() string { return strconv.Itoa(chartHeight - 4) }
func (Chart) YTopLabel() string {
	return strconv.Itoa(chartTop + 8)
}

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

// buildChart lays out pts (oldest first) on a shared time axis.
func buildChart(id, title, unit string, pts []health.Point, format func(float64) string, specs ...lineSpec) Chart {
	c := Chart{ID: id, Title: title, Unit: unit, Empty: len(pts) == 0}
	var ymax float64
	for _, s := range specs {
		for _, p := range pts {
			ymax = max(ymax, s.value(p))
		}
	}
	c.YMax = niceMax(ymax)
	c.YMaxLabel = format(c.YMax)
	if len(pts) > 0 {
		c.XStart = time.UnixMilli(pts[0].T).UTC().Format("15:04")
		c.XEnd = time.UnixMilli(pts[len(pts)-1].T).UTC().Format("15:04:05")
	}
	t0, t1 := int64(0), int64(1)
	if len(pts) > 0 {
		t0, t1 = pts[0].T, pts[len(pts)-1].T
		if t1 <= t0 {
			t1 = t0 + 1
		}
	}
	plotW := float64(chartWidth - chartLeft - chartRight)
	plotH := float64(chartHeight - chartTop - chartBottom)
	per := (len(pts) + maxChartPoints - 1) / maxChartPoints // points per bucket
	if per < 1 {
		per = 1
	}
	for _, s := range specs {
		var b strings.Builder
		for i := 0; i < len(pts); i += per {
			bucket := pts[i:min(i+per, len(pts))]
			p := bucket[len(bucket)-1]
			x := float64(chartLeft) + plotW*float64(p.T-t0)/float64(t1-t0)
			v := 0.0
			for _, q := range bucket {
				v = max(v, s.value(q))
			}
			if math.IsNaN(v) || v < 0 {
				v = 0
			}
			y := float64(chartTop) + plotH*(1-math.Min(v, c.YMax)/c.YMax)
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.FormatFloat(x, 'f', 1, 64))
			b.WriteByte(',')
			b.WriteString(strconv.FormatFloat(y, 'f', 1, 64))
		}
		l := Line{Name: s.name, Color: s.color, Points: b.String(), Last: "–"}
		if len(pts) > 0 {
			l.Last = format(s.value(pts[len(pts)-1]))
		}
		c.Lines = append(c.Lines, l)
	}
	return c
}

// Charts returns the dashboard's four charts.
func (m Model) Charts() []Chart {
	pts := m.Series.Points
	return []Chart{
		buildChart("chart-connections", "Connections", "open", pts, formatRate,
			lineSpec{"connections", "#2563eb", func(p health.Point) float64 { return float64(p.Connections) }}),
		buildChart("chart-throughput", "Throughput", "per second", pts, formatRate,
			lineSpec{"delivered", "#16a34a", func(p health.Point) float64 { return p.EventsDeliveredPerSec }},
			lineSpec{"published", "#9333ea", func(p health.Point) float64 { return p.EventsPublishedPerSec }},
			lineSpec{"frames", "#ea580c", func(p health.Point) float64 { return p.FramesPerSec }},
			lineSpec{"drops", "#dc2626", func(p health.Point) float64 { return p.DropsPerSec }},
			lineSpec{"long-polls", "#6b7280", func(p health.Point) float64 { return p.LongPollPerSec }}),
		buildChart("chart-latency", "Latency", "ms", pts, formatMs,
			lineSpec{"delivery p50", "#2563eb", func(p health.Point) float64 { return p.DeliveryP50Ms }},
			lineSpec{"delivery p99", "#dc2626", func(p health.Point) float64 { return p.DeliveryP99Ms }},
			lineSpec{"write p99", "#ea580c", func(p health.Point) float64 { return p.WriteP99Ms }},
			lineSpec{"rtt p50", "#6b7280", func(p health.Point) float64 { return p.RTTP50Ms }}),
		buildChart("chart-bandwidth", "Bandwidth", "bytes/s", pts, formatBytes,
			lineSpec{"raw", "#9333ea", func(p health.Point) float64 { return p.BytesRawPerSec }},
			lineSpec{"wire", "#16a34a", func(p health.Point) float64 { return p.BytesWirePerSec }}),
	}
}
