// Package jsdirect sends JetStream direct-get requests ($JS.API.DIRECT.GET.<stream>)
// with the options nats.go does not expose: batches from a sequence on one subject
// (next_by_subj + batch), and the last message of every subject matching a pattern
// (multi_last). Both are answered from the stream's per-subject index, without a
// consumer and without scanning messages of other subjects. The stream must allow
// direct gets (AllowDirect; key-value buckets do by default); every replica answers
// them, so an answer may lag the stream leader by the replication delay.
package jsdirect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
)

// Errors of Get.
var (
	// ErrNotFound: no message matched (status 404).
	ErrNotFound = errors.New("jsdirect: no message found")
	// ErrNoDirect: nobody answers direct gets for the stream: it does not exist, does
	// not allow direct gets, or JetStream is down (no responders).
	ErrNoDirect = errors.New("jsdirect: no direct get responders")
)

// Request is a direct-get request (nats-server's JSApiMsgGetRequest).
type Request struct {
	Seq        uint64   `json:"seq,omitempty"`
	NextBySubj string   `json:"next_by_subj,omitempty"`
	LastBySubj string   `json:"last_by_subj,omitempty"`
	Batch      int      `json:"batch,omitempty"`
	MaxBytes   int      `json:"max_bytes,omitempty"`
	MultiLast  []string `json:"multi_last,omitempty"`
	UpToSeq    uint64   `json:"up_to_seq,omitempty"`
}

// Msg is one message of an answer.
type Msg struct {
	Subject string
	Seq     uint64
	// Pending is how many messages matching the request follow this one in the stream
	// (batch and multi_last answers only).
	Pending uint64
	Header  nats.Header
	Data    []byte
}

// Status headers of direct-get answers.
const (
	hdrStatus     = "Status"
	hdrSubject    = "Nats-Subject"
	hdrSequence   = "Nats-Sequence"
	hdrNumPending = "Nats-Num-Pending"
)

// Get sends req for stream and calls fn for every message of the answer, in stream
// order, until the end of the batch (or the one message of a plain request). It returns
// fn's error as is, ErrNotFound when nothing matched, ErrNoDirect when nobody answers.
// ctx bounds the whole answer.
func Get(ctx context.Context, nc *nats.Conn, stream string, req Request, fn func(*Msg) error) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	multi := req.Batch > 0 || len(req.MultiLast) > 0
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("jsdirect: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return fmt.Errorf("jsdirect: %w", err)
	}
	for first := true; ; first = false {
		m, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, nats.ErrNoResponders) {
			return ErrNoDirect
		}
		if err != nil {
			return fmt.Errorf("jsdirect: %w", err)
		}
		if st := m.Header.Get(hdrStatus); st != "" {
			switch st {
			case "204": // end of batch
				return nil
			case "404":
				if first {
					return ErrNotFound
				}
				return nil
			case "503":
				return ErrNoDirect
			default:
				return fmt.Errorf("jsdirect: status %s %s", st, m.Header.Get("Description"))
			}
		}
		if len(m.Data) == 0 && m.Header == nil {
			// A server without headers support answers no-responders with an empty body.
			return ErrNoDirect
		}
		seq, err := strconv.ParseUint(m.Header.Get(hdrSequence), 10, 64)
		if err != nil {
			return fmt.Errorf("jsdirect: answer without a sequence: %w", err)
		}
		out := &Msg{Subject: m.Header.Get(hdrSubject), Seq: seq, Header: m.Header, Data: m.Data}
		if p := m.Header.Get(hdrNumPending); p != "" {
			out.Pending, _ = strconv.ParseUint(p, 10, 64)
		}
		if err := fn(out); err != nil {
			return err
		}
		if !multi {
			return nil
		}
	}
}
