// Package stream is the realtime engine: it serves /v2/realtime/stream (one WebSocket per
// tab, any number of channels), /v2/realtime/publish and /v2/realtime/metrics, fans bus
// events out to subscribed connections, and replays missed events by cursor.
//
// Data flow: the bus delivers every event, in sequence order, to Engine.dispatch (one
// goroutine). dispatch encodes the event once, appends it to the in-memory replay window
// and enqueues the shared encoding into the queue of every local subscriber. Enqueueing
// never blocks: a queue over its event or byte bound is dropped and its connection closed
// with protocol.CloseSlow, after which the client resumes by cursor. Each connection has a
// reader (the HTTP handler goroutine, which owns the connection) and a writer goroutine
// that runs only while there is something to write; the writer batches queued events into
// one frame (at most Config.BatchMaxEvents, at most Config.BatchWindow after the previous
// frame) and writes control frames in queue order.
//
// Guarantees: events of all channels reach a connection in sequence order; a subscribe
// with a cursor is answered with every missed event (from the window or the bus) before
// any live event of those channels, with no gap and no duplicate, or with an explicit
// "not recovered". Nothing outlives its connection: the handler waits for the writer,
// removes the connection from every index and counts the disconnect with a reason.
package stream
