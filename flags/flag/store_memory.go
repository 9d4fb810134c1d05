package flag

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// MemoryOptions configures a MemoryStore. The zero value is usable.
type MemoryOptions struct {
	Defaults []Flag       // built-in flags; nil means Builtins()
	AuditMax int          // audit entries kept (oldest dropped); default 1000
	Logger   *slog.Logger // default slog.Default()
	Now      func() time.Time
}

// MemoryStore keeps flags in this process only: the same contract as KVStore without
// persistence or fleet-wide propagation. Safe for concurrent use.
type MemoryStore struct {
	*hub
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex // guards the fields below; held across a whole Change
	defaults map[string]Flag
	stored   map[string]Flag
	rev      uint64       // last revision handed out
	audit    []AuditEntry // ring, oldest first, at most auditMax
	auditMax int
	auditSeq uint64
	closed   bool
}

// NewMemory returns a MemoryStore holding the defaults.
func NewMemory(o MemoryOptions) (*MemoryStore, error) {
	defaults, err := defaultsMap(o.Defaults)
	if err != nil {
		return nil, err
	}
	m := &MemoryStore{
		log:      o.Logger,
		now:      o.Now,
		defaults: defaults,
		stored:   make(map[string]Flag),
		auditMax: o.AuditMax,
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.auditMax <= 0 {
		m.auditMax = 1000
	}
	m.hub = newHub(merge(defaults, m.stored))
	return m, nil
}

// Change implements Store.
func (m *MemoryStore) Change(ctx context.Context, name string, c Change, actor string) (Flag, error) {
	if err := ValidateName(name); err != nil {
		return Flag{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Flag{}, ErrClosed
	}
	cur, exists := m.stored[name]
	if !exists {
		cur, exists = m.defaults[name]
	}
	cur.Name = name
	next, err := c.apply(cur, exists, actor, m.now())
	if err != nil {
		return Flag{}, err
	}
	m.rev++
	next.Revision = m.rev
	m.stored[name] = next
	m.hub.publish(merge(m.defaults, m.stored))

	m.auditSeq++
	e := AuditEntry{Seq: m.auditSeq, Time: next.UpdatedAt, Actor: actor, Flag: name, Reason: c.Reason, After: next.clone()}
	if exists {
		b := cur.clone()
		e.Before = &b
	}
	if len(m.audit) == m.auditMax {
		m.audit = append(m.audit[:0], m.audit[1:]...)
	}
	m.audit = append(m.audit, e)
	logChange(m.log, e)
	return next.clone(), nil
}

// Audit implements Store.
func (m *MemoryStore) Audit(ctx context.Context, limit int) ([]AuditEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	limit = clampAuditLimit(limit)
	out := make([]AuditEntry, 0, min(limit, len(m.audit)))
	for i := len(m.audit) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, m.audit[i])
	}
	return out, nil
}

// Close implements Store.
func (m *MemoryStore) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.hub.close()
	return nil
}

// Audit limits.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

func clampAuditLimit(n int) int {
	if n <= 0 {
		return DefaultAuditLimit
	}
	return min(n, MaxAuditLimit)
}

// defaultsMap validates defaults (nil: Builtins()) and indexes them by name.
func defaultsMap(defs []Flag) (map[string]Flag, error) {
	if defs == nil {
		defs = Builtins()
	}
	out := make(map[string]Flag, len(defs))
	for _, f := range defs {
		if err := f.Validate(); err != nil {
			return nil, fmt.Errorf("default flag: %w", err)
		}
		f.Revision = 0
		out[f.Name] = f.clone()
	}
	return out, nil
}

// merge builds a snapshot of defaults overlaid with stored records.
func merge(defaults, stored map[string]Flag) *Evaluator {
	e := &Evaluator{flags: make(map[string]Flag, len(defaults)+len(stored))}
	for n, f := range defaults {
		e.flags[n] = f
	}
	for n, f := range stored {
		e.flags[n] = f
	}
	return e
}

func logChange(log *slog.Logger, e AuditEntry) {
	attrs := []any{"flag", e.Flag, "actor", e.Actor, "revision", e.After.Revision,
		"enabled", e.After.Enabled, "rollout", e.After.Rollout, "overrides", len(e.After.Overrides)}
	if e.Before != nil {
		attrs = append(attrs, "wasEnabled", e.Before.Enabled, "wasRollout", e.Before.Rollout)
	}
	if e.Reason != "" {
		attrs = append(attrs, "reason", e.Reason)
	}
	log.Info("flag changed", attrs...)
}
