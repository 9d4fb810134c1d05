package inspect

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultSubject is where instances listen for queries (outside the bus's event
// subjects, "rt.ev.>").
const DefaultSubject = "rt.admin.connections"

// NATS asks the fleet with request/reply on one NATS connection: Connections publishes
// the query with a fresh reply inbox, every instance (this one too) answers it, and the
// answers are collected until as many as expected arrived or the context ends.
type NATS struct {
	nc      *nats.Conn         // immutable; owned by the caller
	subject string             // immutable
	sub     *nats.Subscription // answers other instances' queries
	log     *slog.Logger
}

var _ Asker = (*NATS)(nil)

// NewNATS subscribes to subject ("" = DefaultSubject) and answers every query with
// local. The caller keeps ownership of nc; Close unsubscribes.
func NewNATS(nc *nats.Conn, subject string, local Local, log *slog.Logger) (*NATS, error) {
	if subject == "" {
		subject = DefaultSubject
	}
	if log == nil {
		log = slog.Default()
	}
	n := &NATS{nc: nc, subject: subject, log: log}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) { n.answer(m, local) })
	if err != nil {
		return nil, fmt.Errorf("inspect: subscribe %s: %w", subject, err)
	}
	// Once the server has the subscription, every later query reaches this instance
	// (a query from another connection could otherwise overtake it).
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("inspect: subscribe %s: %w", subject, err)
	}
	n.sub = sub
	return n, nil
}

// answer runs on the subscription's goroutine: decode, ask the engine, reply.
func (n *NATS) answer(m *nats.Msg, local Local) {
	if m.Reply == "" {
		return
	}
	var q Query
	if err := json.Unmarshal(m.Data, &q); err != nil || q.Normalize() != nil {
		return // not a query of ours: nothing to answer
	}
	a := local(q)
	b, err := encodeBounded(a, n.nc.MaxPayload())
	if err != nil {
		n.log.Warn("inspect: answer", "err", err)
		return
	}
	if err := n.nc.Publish(m.Reply, b); err != nil {
		n.log.Warn("inspect: reply", "err", err)
	}
}

// encodeBounded encodes a, dropping connections from the end until it fits max bytes.
func encodeBounded(a Answer, max int64) ([]byte, error) {
	for {
		b, err := json.Marshal(a)
		if err != nil {
			return nil, err
		}
		if int64(len(b)) <= max || len(a.Connections) == 0 {
			return b, nil
		}
		a.Connections = a.Connections[:len(a.Connections)/2]
	}
}

// Connections asks every instance. expect is how many answers to wait for (the live
// fleet's size; at least 1); it returns early once that many arrived.
func (n *NATS) Connections(ctx context.Context, q Query, expect int) (Result, error) {
	if err := q.Normalize(); err != nil {
		return Result{}, err
	}
	expect = min(max(expect, 1), MaxAnswers)
	body, err := json.Marshal(q)
	if err != nil {
		return Result{}, err
	}
	inbox := n.nc.NewInbox()
	replies := make(chan *nats.Msg, 64)
	sub, err := n.nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return Result{}, fmt.Errorf("inspect: reply inbox: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := n.nc.PublishRequest(n.subject, inbox, body); err != nil {
		return Result{}, fmt.Errorf("inspect: ask: %w", err)
	}
	res := Result{Expected: expect, FleetWide: true}
	seen := map[string]bool{}
	for len(res.Answers) < expect {
		select {
		case <-ctx.Done():
			return sorted(res), nil
		case m := <-replies:
			var a Answer
			if err := json.Unmarshal(m.Data, &a); err != nil || a.Instance == "" || seen[a.Instance] {
				continue
			}
			seen[a.Instance] = true
			if len(a.Connections) > MaxPerInstance {
				a.Connections = a.Connections[:MaxPerInstance]
			}
			res.Answers = append(res.Answers, a)
		}
	}
	return sorted(res), nil
}

func sorted(r Result) Result {
	slices.SortFunc(r.Answers, func(a, b Answer) int { return cmp.Compare(a.Instance, b.Instance) })
	return r
}

// Close stops answering queries (one being answered may still finish).
func (n *NATS) Close() error {
	if err := n.sub.Unsubscribe(); err != nil && err != nats.ErrConnectionClosed && err != nats.ErrBadSubscription {
		return err
	}
	return nil
}

// DefaultTimeout is how long the console waits for the fleet's answers.
const DefaultTimeout = 2 * time.Second
