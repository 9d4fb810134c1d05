// Package cluster holds the horizontal-scale tests (issue 5): several stream engines
// over one three-node NATS JetStream cluster, all started in this process on
// 127.0.0.1 (nats-server as a library, engines behind httptest servers), with
// instances and NATS nodes killed and restarted mid-stream. It has no code of its own;
// see docs/operations.md for what the tests show.
package cluster
