// A CommonJS consumer of the built package: require() both entry points and use them.
"use strict";
const assert = require("node:assert/strict");
const rt = require("@encore-realtime/client");
const react = require("@encore-realtime/client/react");

assert.equal(typeof rt.RealtimeClient, "function");
assert.equal(react.RealtimeClient, rt.RealtimeClient, "one RealtimeClient class for both entry points");
assert.equal(rt.actionFor(4300), "use-poll");
assert.equal(rt.CloseCode.UsePoll, 4300);
assert.equal(rt.TRANSITIONS.polling.welcome, "open");

// A client on a stand-in WebSocket: connect, welcome, subscribe, an event, close.
const sockets = [];
class FakeWebSocket {
  constructor(url) {
    this.url = url;
    this.readyState = 1;
    this.sent = [];
    sockets.push(this);
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close() {
    this.readyState = 3;
  }
}
const network = { online: () => true, subscribe: () => () => {} };
const client = new rt.RealtimeClient({ url: "ws://127.0.0.1:9/v2/realtime/stream", WebSocket: FakeWebSocket, network, pingIntervalMs: 0, healthIntervalMs: 0 });
const got = [];
client.subscribe("orders", (ev) => got.push(ev.id));
client.connect();
assert.equal(client.state, "connecting");
const ws = sockets[0];
ws.onmessage({ data: JSON.stringify({ type: "welcome", version: 1, session: "s", instance: "i", heartbeatMs: 0, serverTime: Date.now(), epoch: "E", seq: 3 }) });
assert.equal(client.state, "open");
queueMicrotask(() => {
  assert.deepEqual(ws.sent[0], { type: "subscribe", id: ws.sent[0].id, channels: ["orders"], cursor: { seq: 3, epoch: "E" } });
  ws.onmessage({ data: JSON.stringify({ type: "events", events: [{ id: "o1", seq: 4, channel: "orders", ts: Date.now() }] }) });
  assert.deepEqual(got, ["o1"]);
  client.close();
  assert.equal(client.state, "closed");
  console.log("cjs consumer: ok");
});
