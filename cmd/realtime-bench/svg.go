package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"strconv"
)

// A small SVG chart writer: line charts (memory curves) and grouped bar charts
// (latency, bytes and CPU per event). Output is self-contained SVG 1.1 text with no
// scripts or external references, so it renders the same on GitHub and in a browser.

// Series is one line of a line chart.
type Series struct {
	Name string
	X, Y []float64
}

// BarGroup is one cluster of bars (one value per series name) in a bar chart.
type BarGroup struct {
	Label  string
	Values []float64
}

// Chart holds what both chart kinds share.
type Chart struct {
	Title, XLabel, YLabel string
	Width, Height         int // default 720 x 360
	LogY                  bool
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

const (
	marginL, marginR, marginT, marginB = 70.0, 20.0, 40.0, 60.0
)

type svgDoc struct {
	b    bytes.Buffer
	w, h float64
}

func newSVG(c *Chart) *svgDoc {
	if c.Width == 0 {
		c.Width = 720
	}
	if c.Height == 0 {
		c.Height = 360
	}
	d := &svgDoc{w: float64(c.Width), h: float64(c.Height)}
	fmt.Fprintf(&d.b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		c.Width, c.Height, c.Width, c.Height)
	fmt.Fprintf(&d.b, `<rect width="%d" height="%d" fill="white"/>`+"\n", c.Width, c.Height)
	d.text(d.w/2, 22, "middle", 15, c.Title)
	d.text(marginL+(d.w-marginL-marginR)/2, d.h-12, "middle", 12, c.XLabel)
	fmt.Fprintf(&d.b, `<text x="16" y="%.1f" text-anchor="middle" transform="rotate(-90 16 %.1f)">%s</text>`+"\n",
		marginT+(d.h-marginT-marginB)/2, marginT+(d.h-marginT-marginB)/2, esc(c.YLabel))
	return d
}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (d *svgDoc) text(x, y float64, anchor string, size int, s string) {
	fmt.Fprintf(&d.b, `<text x="%.1f" y="%.1f" text-anchor="%s" font-size="%d">%s</text>`+"\n", x, y, anchor, size, esc(s))
}

func (d *svgDoc) line(x1, y1, x2, y2 float64, stroke string, width float64) {
	fmt.Fprintf(&d.b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"/>`+"\n", x1, y1, x2, y2, stroke, width)
}

func (d *svgDoc) bytes() []byte {
	d.b.WriteString("</svg>\n")
	return d.b.Bytes()
}

// niceTicks returns about n round tick values covering [lo, hi].
func niceTicks(lo, hi float64, n int) []float64 {
	if !(hi > lo) {
		hi = lo + 1
	}
	raw := (hi - lo) / float64(n)
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	first, last := math.Floor(lo/step), math.Ceil(hi/step-1e-9)
	for i := first; i <= last; i++ {
		out = append(out, i*step)
	}
	return out
}

func fmtTick(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 4, 64) + "M"
	case a >= 1e4:
		return strconv.FormatFloat(v/1e3, 'g', 4, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
}

// yAxis maps values to pixels and draws the grid. For LogY, values must be > 0.
type yAxis struct {
	lo, hi      float64
	log         bool
	top, bottom float64
}

func (a yAxis) px(v float64) float64 {
	if a.log {
		v, lo, hi := math.Log10(math.Max(v, a.lo)), math.Log10(a.lo), math.Log10(a.hi)
		return a.bottom - (v-lo)/(hi-lo)*(a.bottom-a.top)
	}
	return a.bottom - (v-a.lo)/(a.hi-a.lo)*(a.bottom-a.top)
}

func (d *svgDoc) drawYAxis(c *Chart, maxV, minPos float64) yAxis {
	a := yAxis{top: marginT, bottom: d.h - marginB, log: c.LogY}
	var ticks []float64
	if c.LogY {
		if minPos <= 0 || math.IsInf(minPos, 1) {
			minPos = 1
		}
		a.lo = math.Pow(10, math.Floor(math.Log10(minPos)))
		a.hi = math.Pow(10, math.Ceil(math.Log10(math.Max(maxV, a.lo*10))))
		for v := a.lo; v <= a.hi*1.0001; v *= 10 {
			ticks = append(ticks, v)
			if v*10 <= a.hi*1.0001 {
				ticks = append(ticks, 2*v, 5*v)
			}
		}
	} else {
		ticks = niceTicks(0, math.Max(maxV, 1e-9)*1.05, 5)
		a.lo, a.hi = 0, ticks[len(ticks)-1]
	}
	for _, t := range ticks {
		y := a.px(t)
		d.line(marginL, y, d.w-marginR, y, "#e0e0e0", 1)
		d.text(marginL-6, y+4, "end", 11, fmtTick(t))
	}
	d.line(marginL, a.top, marginL, a.bottom, "#333", 1)
	d.line(marginL, a.bottom, d.w-marginR, a.bottom, "#333", 1)
	return a
}

func (d *svgDoc) legend(names []string) {
	x := marginL + 10
	for i, n := range names {
		col := palette[i%len(palette)]
		fmt.Fprintf(&d.b, `<rect x="%.1f" y="%.1f" width="12" height="12" fill="%s"/>`+"\n", x, marginT-2, col)
		d.text(x+16, marginT+8, "start", 11, n)
		x += 24 + 7*float64(len(n))
	}
}

// LineChart renders series as polylines over a shared linear x axis.
func LineChart(c Chart, series []Series) []byte {
	d := newSVG(&c)
	minX, maxX, maxY, minPos := math.Inf(1), math.Inf(-1), 0.0, math.Inf(1)
	for _, s := range series {
		for i := range s.X {
			minX, maxX = math.Min(minX, s.X[i]), math.Max(maxX, s.X[i])
			maxY = math.Max(maxY, s.Y[i])
			if s.Y[i] > 0 {
				minPos = math.Min(minPos, s.Y[i])
			}
		}
	}
	if math.IsInf(minX, 1) {
		minX, maxX = 0, 1
	}
	if maxX == minX {
		maxX = minX + 1
	}
	ya := d.drawYAxis(&c, maxY, minPos)
	left, right := marginL, d.w-marginR
	px := func(x float64) float64 { return left + (x-minX)/(maxX-minX)*(right-left) }
	for _, t := range niceTicks(minX, maxX, 6) {
		if t < minX || t > maxX {
			continue
		}
		d.line(px(t), ya.bottom, px(t), ya.bottom+4, "#333", 1)
		d.text(px(t), ya.bottom+18, "middle", 11, fmtTick(t))
	}
	names := make([]string, len(series))
	for i, s := range series {
		names[i] = s.Name
		var pts bytes.Buffer
		for j := range s.X {
			fmt.Fprintf(&pts, "%.1f,%.1f ", px(s.X[j]), ya.px(s.Y[j]))
		}
		fmt.Fprintf(&d.b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n",
			palette[i%len(palette)], bytes.TrimSpace(pts.Bytes()))
	}
	d.legend(names)
	return d.bytes()
}

// BarChart renders groups of bars, one bar per series name in each group, with the
// value printed above each bar.
func BarChart(c Chart, seriesNames []string, groups []BarGroup) []byte {
	d := newSVG(&c)
	maxY, minPos := 0.0, math.Inf(1)
	for _, g := range groups {
		for _, v := range g.Values {
			maxY = math.Max(maxY, v)
			if v > 0 {
				minPos = math.Min(minPos, v)
			}
		}
	}
	ya := d.drawYAxis(&c, maxY, minPos)
	left, right := marginL, d.w-marginR
	gw := (right - left) / float64(max(len(groups), 1))
	bw := gw * 0.8 / float64(max(len(seriesNames), 1))
	for gi, g := range groups {
		gx := left + float64(gi)*gw + gw*0.1
		for si, v := range g.Values {
			if si >= len(seriesNames) {
				break
			}
			y := ya.px(v)
			if c.LogY && v <= 0 {
				y = ya.bottom
			}
			x := gx + float64(si)*bw
			fmt.Fprintf(&d.b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n",
				x, y, math.Max(bw-2, 1), math.Max(ya.bottom-y, 0), palette[si%len(palette)])
			d.text(x+bw/2, y-3, "middle", 10, fmtTick(roundSig(v, 3)))
		}
		d.text(gx+gw*0.4, ya.bottom+16, "middle", 11, g.Label)
	}
	d.legend(seriesNames)
	return d.bytes()
}

func roundSig(v float64, n int) float64 {
	if v == 0 {
		return 0
	}
	p := math.Pow(10, float64(n)-math.Ceil(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}
