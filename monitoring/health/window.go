package health

import (
	"sync"
	"time"
)

// Window records latencies and reports the distribution of roughly the last Span
// (between Span-Span/Slots and Span). It keeps Slots sub-histograms that rotate with
// the injected clock, so memory is bounded. Window is safe for concurrent use.
type Window struct {
	now   func() time.Time
	slot  time.Duration
	mu    sync.Mutex // guards the fields below
	hists []*Histogram
	start []int64 // slot start (unix nanos / slot) of each sub-histogram
}

// NewWindow returns a Window over span split in slots sub-windows. now nil means time.Now.
func NewWindow(span time.Duration, slots int, now func() time.Time) *Window {
	if slots < 1 {
		slots = 1
	}
	if span < time.Duration(slots) {
		span = time.Duration(slots)
	}
	if now == nil {
		now = time.Now
	}
	w := &Window{now: now, slot: span / time.Duration(slots), hists: make([]*Histogram, slots), start: make([]int64, slots)}
	for i := range w.hists {
		w.hists[i] = NewHistogram()
		w.start[i] = -1
	}
	return w
}

func (w *Window) index(t time.Time) (int, int64) {
	n := t.UnixNano() / int64(w.slot)
	i := int(n % int64(len(w.hists)))
	if i < 0 {
		i += len(w.hists)
	}
	return i, n
}

// Record adds one value in milliseconds; it reports false for a value Histogram.Record refuses.
func (w *Window) Record(ms float64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	i, n := w.index(w.now())
	if w.start[i] != n {
		w.hists[i] = NewHistogram()
		w.start[i] = n
	}
	return w.hists[i].Record(ms)
}

// Snapshot returns a new Histogram with every value of the live sub-windows.
func (w *Window) Snapshot() *Histogram {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, n := w.index(w.now())
	out := NewHistogram()
	for i, h := range w.hists {
		if w.start[i] >= 0 && n-w.start[i] < int64(len(w.hists)) {
			_ = out.Merge(h) // same mapping: cannot fail
		}
	}
	return out
}
