package views

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// formatCount writes n with thousands separators: 1234567 -> "1,234,567".
func formatCount(n uint64) string {
	s := strconv.FormatUint(n, 10)
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	if pre > 0 {
		b.WriteString(s[:pre])
	}
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

// formatRate writes a per-second figure with sensible precision.
func formatRate(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 10:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case v < 1000:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return formatCount(uint64(math.Round(v)))
	}
}

// formatMs writes a latency in milliseconds.
func formatMs(v float64) string {
	if v == 0 {
		return "–"
	}
	if v < 10 {
		return strconv.FormatFloat(v, 'f', 2, 64) + " ms"
	}
	if v < 1000 {
		return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
	}
	return strconv.FormatFloat(v/1000, 'f', 2, 64) + " s"
}

// formatBytes writes a byte count in decimal units.
func formatBytes(v float64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	i := 0
	for v >= 1000 && i < len(units)-1 {
		v /= 1000
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(v, 'f', 0, 64) + " B"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i]
}

// formatMoney writes an amount with two decimals and separators: 1234.5 -> "$1,234.50".
func formatMoney(v float64) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	cents := uint64(math.Round(v * 100))
	return fmt.Sprintf("%s$%s.%02d", sign, formatCount(cents/100), cents%100)
}

// formatFloat writes an input value compactly.
func formatFloat(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }

// formatPercent writes a percentage with one decimal.
func formatPercent(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + "%" }

// formatTime writes a UTC clock time.
func formatTime(t time.Time) string { return t.UTC().Format("15:04:05 UTC") }

// formatAge writes seconds as "3s" or "2m".
func formatAge(s float64) string {
	if s < 120 {
		return strconv.FormatFloat(s, 'f', 0, 64) + "s"
	}
	return strconv.FormatFloat(s/60, 'f', 0, 64) + "m"
}

// plural writes n with the singular or plural noun: "1 instance", "2 instances".
func plural(n uint64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return formatCount(n) + " " + many
}

// formatMsZero is formatMs for a figure that is measured even when 0 (a round trip
// under a millisecond on loopback): "< 1 ms" instead of "–".
func formatMsZero(v float64) string {
	if v < 1 {
		return "< 1 ms"
	}
	return formatMs(v)
}

// formatPerDay writes a daily amount: cents as usual, and amounts under a cent with
// two significant digits ("$0.0031"), so small fleets do not read "$0.00".
func formatPerDay(v float64) string {
	a := math.Abs(v)
	if a == 0 || a >= 0.01 {
		if a == 0 {
			return "$0"
		}
		return formatMoney(v)
	}
	sign := ""
	if v < 0 {
		sign = "-"
	}
	digits := int(math.Ceil(-math.Log10(a))) + 1
	return sign + "$" + strconv.FormatFloat(a, 'f', digits, 64)
}

// formatCountF writes a gauge-like float as a whole count ("1", not "1.00").
func formatCountF(v float64) string {
	if v <= 0 || math.IsNaN(v) {
		return "0"
	}
	return formatCount(uint64(math.Round(v)))
}

// barWidth is v as a share of top in SVG units (0..100) for a bar, at least 1 when v > 0.
func barWidth(v, top float64) string {
	if v <= 0 || top <= 0 {
		return "0"
	}
	return strconv.FormatFloat(math.Max(1, 100*v/top), 'f', 1, 64)
}
