package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// On a replicated stream, a replay consumer may be placed on a replica that has not
// yet stored the newest messages. Its count of pending messages and what it delivers
// then stop short of upTo, and the replay would end early without an error: a silent
// gap (seen in test/cluster's storm: two clients of 500 "recovered" nothing). So when
// a replay ends before upTo, the stream leader (authoritative) is asked, per subject,
// for the next message after the last one delivered; one at or below upTo means the
// replay missed it: Replay then goes on from the last delivered event with a new
// consumer until its context ends, and only then fails (ErrUnavailable: the client
// retries).

// errReplicaBehind is wrapped (with ErrUnavailable) by verifyReplayTail's error when the
// replay missed an event; Replay goes on with a new consumer.
var errReplicaBehind = errors.New("replica behind")

// msgGetRequest is JetStream's STREAM.MSG.GET request: the first message with a
// sequence >= Seq on subject NextBySubj.
type msgGetRequest struct {
	Seq        uint64 `json:"seq"`
	NextBySubj string `json:"next_by_subj"`
}

type msgGetResponse struct {
	Message *struct {
		Seq uint64 `json:"seq"`
	} `json:"message"`
	Error *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error"`
}

// jsErrNoMessageFound is JetStream's error code for "no message found".
const jsErrNoMessageFound = 10037

// verifyReplayTail checks that no message of subjects has last < seq <= upTo.
func (j *JetStream) verifyReplayTail(ctx context.Context, subjects []string, last, upTo uint64) error {
	if last >= upTo {
		return nil
	}
	for _, subj := range subjects {
		req, _ := json.Marshal(msgGetRequest{Seq: last + 1, NextBySubj: subj})
		msg, err := j.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+j.cfg.Stream, req)
		if err != nil {
			return j.wrap("replay: verify", err)
		}
		var r msgGetResponse
		if err := json.Unmarshal(msg.Data, &r); err != nil {
			return j.wrap("replay: verify", err)
		}
		switch {
		case r.Error != nil && r.Error.ErrCode == jsErrNoMessageFound:
			continue
		case r.Error != nil:
			return j.wrap("replay: verify", fmt.Errorf("%w: %d %s", ErrUnavailable, r.Error.Code, r.Error.Description))
		case r.Message != nil && r.Message.Seq <= upTo:
			j.log.Warn("bus: replay ended before an event the stream holds (replica behind)",
				"subject", subj, "missed_seq", r.Message.Seq, "last", last, "up_to", upTo)
			return j.wrap("replay", fmt.Errorf("%w: %w: seq %d on %s not delivered", ErrUnavailable, errReplicaBehind, r.Message.Seq, subj))
		}
	}
	return nil
}
