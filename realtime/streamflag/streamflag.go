// Package streamflag connects the feature flag realtime-streaming-v2 (flags/flag) to a
// stream engine: the engine refuses and moves stream connections of users for whom
// the flag is off, and tells their polls when streaming is allowed again. Both shells
// (cmd/realtimed and the Encore service realtime) use it.
package streamflag

import (
	"errors"
	"log/slog"
	"time"

	"encore.app/flags/flag"
	"encore.app/realtime/stream"
)

// Follower applies the flag to an engine now and after every change, on one goroutine
// it owns. Close stops it and waits.
type Follower struct {
	sub  *flag.Subscription
	stop chan struct{} // closed by Close
	done chan struct{} // closed when the goroutine ends
}

// Follow subscribes to src, applies the current value of flag.StreamingV2 to eng
// (Engine.ApplyStreamingFlag) and re-applies it on every change of that flag until
// Close or until src closes. Subscribing before the first read means no change between
// the two is missed.
func Follow(eng *stream.Engine, src flag.Source, log *slog.Logger) (*Follower, error) {
	if log == nil {
		log = slog.Default()
	}
	sub, err := src.Subscribe()
	if err != nil {
		return nil, err
	}
	f := &Follower{sub: sub, stop: make(chan struct{}), done: make(chan struct{})}
	apply := func(ev *flag.Evaluator) {
		start := time.Now()
		moved := eng.ApplyStreamingFlag(func(userID string) bool { return ev.Evaluate(flag.StreamingV2, userID) })
		def, _ := ev.Flag(flag.StreamingV2)
		log.Info("streaming flag applied", "flag", flag.StreamingV2, "enabled", def.Enabled, "rollout", def.Rollout,
			"revision", def.Revision, "moved_to_poll", moved, "took", time.Since(start))
	}
	last := src.Evaluator()
	apply(last)
	go func() {
		defer close(f.done)
		for {
			select {
			case <-f.stop:
				return
			case _, ok := <-sub.C:
				if !ok {
					log.Warn("streaming flag: source closed; the last value stays in force", "err", errors.New("subscription closed"))
					return
				}
				cur := src.Evaluator()
				if cur.Changed(last, flag.StreamingV2) {
					apply(cur)
				}
				last = cur
			}
		}
	}()
	return f, nil
}

// Close stops following (the last applied value stays in force) and waits for the
// goroutine. Call it once, before closing the source.
func (f *Follower) Close() {
	close(f.stop)
	<-f.done
	f.sub.Close()
}
