package flag

import "context"

// Watch calls fn(old, new) on the calling goroutine each time flag name changes in
// src (by revision or presence), until ctx is done (it returns ctx.Err()) or src is
// closed (it returns ErrClosed). Changes to other flags are skipped; bursts of
// changes may be coalesced into one call whose new is the latest snapshot. fn should
// not block for long: further changes wait for it (none are lost, they coalesce).
//
// The engine runs it on a goroutine it owns, for example:
//
//	go func() { defer wg.Done(); _ = flag.Watch(ctx, store, flag.StreamingV2, onChange) }()
//
// and in onChange re-evaluates new.Evaluate(flag.StreamingV2, userID) per connection.
func Watch(ctx context.Context, src Source, name string, fn func(old, new *Evaluator)) error {
	sub, err := src.Subscribe()
	if err != nil {
		return err
	}
	defer sub.Close()
	last := src.Evaluator() // after Subscribe: no change between the two is missed
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case _, ok := <-sub.C:
			if !ok {
				return ErrClosed
			}
			cur := src.Evaluator()
			if cur.Changed(last, name) {
				fn(last, cur)
			}
			last = cur
		}
	}
}
