package rtclient

import (
	"container/list"
	"time"
)

// Dedup remembers event ids for a time-to-live, up to a maximum count (oldest evicted
// first), so memory stays bounded however long a client runs. Not safe for concurrent
// use.
type Dedup struct {
	max   int
	ttl   time.Duration
	order *list.List // of dedupEntry, oldest first
	seen  map[string]*list.Element
}

type dedupEntry struct {
	id string
	at time.Time
}

// NewDedup returns a Dedup keeping at most max ids (default 10000) for ttl (default 10m).
func NewDedup(max int, ttl time.Duration) *Dedup {
	if max <= 0 {
		max = 10000
	}
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	return &Dedup{max: max, ttl: ttl, order: list.New(), seen: map[string]*list.Element{}}
}

// Add records id at now and reports whether it was new.
func (d *Dedup) Add(id string, now time.Time) bool {
	for e := d.order.Front(); e != nil; e = d.order.Front() {
		if now.Sub(e.Value.(dedupEntry).at) < d.ttl {
			break
		}
		delete(d.seen, e.Value.(dedupEntry).id)
		d.order.Remove(e)
	}
	if _, ok := d.seen[id]; ok {
		return false
	}
	if d.order.Len() >= d.max {
		e := d.order.Front()
		delete(d.seen, e.Value.(dedupEntry).id)
		d.order.Remove(e)
	}
	d.seen[id] = d.order.PushBack(dedupEntry{id: id, at: now})
	return true
}

// Len is the number of remembered ids.
func (d *Dedup) Len() int { return d.order.Len() }
