package presence

import (
	"context"
	"sync"
)

var _ Store = (*MemoryStore)(nil)

// MemoryStore is a Store in this process's memory, for one instance without a shared
// store and for tests of several trackers in one process. Callbacks run on the
// goroutine of the Put or Heartbeat that caused them, before it returns.
type MemoryStore struct {
	mu      sync.Mutex
	sums    map[string]map[string]*Summary // channel -> instance -> latest
	alive   map[string]Alive
	follows map[string]map[int]func(*Summary)
	alives  map[int]func(Alive)
	next    int
	closed  bool
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{sums: map[string]map[string]*Summary{}, alive: map[string]Alive{},
		follows: map[string]map[int]func(*Summary){}, alives: map[int]func(Alive){}}
}

func (m *MemoryStore) Put(_ context.Context, sums []*Summary) error {
	for _, s := range sums {
		c := *s
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return ErrClosed
		}
		byInst := m.sums[c.Channel]
		if byInst == nil {
			byInst = map[string]*Summary{}
			m.sums[c.Channel] = byInst
		}
		if c.Empty() {
			delete(byInst, c.Instance)
		} else {
			byInst[c.Instance] = &c
		}
		fns := make([]func(*Summary), 0, len(m.follows[c.Channel]))
		for _, fn := range m.follows[c.Channel] {
			fns = append(fns, fn)
		}
		m.mu.Unlock()
		for _, fn := range fns {
			cc := c
			fn(&cc)
		}
	}
	return nil
}

func (m *MemoryStore) Heartbeat(_ context.Context, a Alive) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	m.alive[a.Instance] = a
	fns := make([]func(Alive), 0, len(m.alives))
	for _, fn := range m.alives {
		fns = append(fns, fn)
	}
	m.mu.Unlock()
	for _, fn := range fns {
		fn(a)
	}
	return nil
}

func (m *MemoryStore) FollowAlive(fn func(Alive)) (func(), error) {
	m.mu.Lock()
	id := m.next
	m.next++
	m.alives[id] = fn
	cur := make([]Alive, 0, len(m.alive))
	for _, a := range m.alive {
		cur = append(cur, a)
	}
	m.mu.Unlock()
	for _, a := range cur {
		fn(a)
	}
	return func() {
		m.mu.Lock()
		delete(m.alives, id)
		m.mu.Unlock()
	}, nil
}

func (m *MemoryStore) Load(_ context.Context, channel string) ([]*Summary, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var out []*Summary
	for _, s := range m.sums[channel] {
		c := *s
		out = append(out, &c)
	}
	return out, nil
}

func (m *MemoryStore) Follow(channel string, fn func(*Summary)) (func(), error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := m.next
	m.next++
	if m.follows[channel] == nil {
		m.follows[channel] = map[int]func(*Summary){}
	}
	m.follows[channel][id] = fn
	return func() {
		m.mu.Lock()
		delete(m.follows[channel], id)
		if len(m.follows[channel]) == 0 {
			delete(m.follows, channel)
		}
		m.mu.Unlock()
	}, nil
}

func (m *MemoryStore) Purge(_ context.Context, instance string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for ch, byInst := range m.sums {
		delete(byInst, instance)
		if len(byInst) == 0 {
			delete(m.sums, ch)
		}
	}
	delete(m.alive, instance)
	return nil
}

// Forget drops instance's liveness record as a lapsed one would be (for tests).
func (m *MemoryStore) Forget(instance string) {
	m.mu.Lock()
	delete(m.alive, instance)
	m.mu.Unlock()
}

func (m *MemoryStore) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}
