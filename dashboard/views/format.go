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
