package stream

// BusReplaysActive is the number of recoveries reading from the bus right now: each
// holds one of MaxBusReplays slots and at most one JetStream consumer.
func (e *Engine) BusReplaysActive() int { return len(e.replaySlots) }
