package flag

import (
	"hash/fnv"
	"slices"
	"strings"
)

// Bucket returns the rollout bucket (0-9999) of userID for flag name: FNV-1a 64 of
// name + ":" + userID, modulo 10000. Stable across processes, restarts and versions;
// changing it would move users between rollout groups.
func Bucket(name, userID string) int {
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte{':'})
	h.Write([]byte(userID))
	return int(h.Sum64() % 10000)
}

// Evaluator is an immutable snapshot of every known flag. It is safe for concurrent
// use; stores replace it as a whole when anything changes.
type Evaluator struct {
	flags map[string]Flag
}

// NewEvaluator builds a snapshot of flags (later duplicates win). The flags are copied.
func NewEvaluator(flags ...Flag) *Evaluator {
	e := &Evaluator{flags: make(map[string]Flag, len(flags))}
	for _, f := range flags {
		e.flags[f.Name] = f.clone()
	}
	return e
}

// Evaluate reports flag name's value for userID; unknown flags are false.
func (e *Evaluator) Evaluate(name, userID string) bool {
	f, ok := e.flags[name]
	if !ok {
		return false
	}
	return f.Evaluate(userID)
}

// EvaluateAll returns every flag's value for userID, in a new map.
func (e *Evaluator) EvaluateAll(userID string) map[string]bool {
	out := make(map[string]bool, len(e.flags))
	for name, f := range e.flags {
		out[name] = f.Evaluate(userID)
	}
	return out
}

// Flag returns a copy of flag name's definition.
func (e *Evaluator) Flag(name string) (Flag, bool) {
	f, ok := e.flags[name]
	if !ok {
		return Flag{}, false
	}
	return f.clone(), true
}

// Flags returns copies of every definition, sorted by name.
func (e *Evaluator) Flags() []Flag {
	out := make([]Flag, 0, len(e.flags))
	for _, f := range e.flags {
		out = append(out, f.clone())
	}
	slices.SortFunc(out, func(a, b Flag) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Changed reports whether flag name differs between old and e (by revision, or by
// presence). A nil old counts as empty. Use it after a notification to skip work
// when an unrelated flag changed.
func (e *Evaluator) Changed(old *Evaluator, name string) bool {
	var of Flag
	var ook bool
	if old != nil {
		of, ook = old.flags[name]
	}
	nf, nok := e.flags[name]
	if ook != nok {
		return true
	}
	return of.Revision != nf.Revision
}
