import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { RealtimeClient, type RealtimeClientOptions } from "../src/client.js";
import type { RealtimeEvent } from "../src/types.js";
import { FakeNetwork, FakeWebSocket } from "./fake-ws.js";
import { flush, json, newClient, nextSocket, pollServer, URL } from "./helpers.js";

beforeEach(() => {
  vi.useFakeTimers({ now: 1_700_000_000_000 });
  FakeWebSocket.reset();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("state machine", () => {
  it("idle -> connecting -> open -> reconnecting -> connecting -> open -> closed", async () => {
    const { client, states } = newClient();
    expect(client.state).toBe("idle");
    client.connect();
    expect(client.state).toBe("connecting");
    FakeWebSocket.last().welcome();
    expect(client.state).toBe("open");
    FakeWebSocket.last().serverClose(1006);
    expect(client.state).toBe("reconnecting");
    vi.advanceTimersByTime(1000); // random 0.5 * base 1000 = 500 ms
    expect(client.state).toBe("connecting");
    expect(FakeWebSocket.instances).toHaveLength(2);
    FakeWebSocket.last().welcome();
    client.close();
    expect(states).toEqual(["connecting", "open", "reconnecting", "connecting", "open", "closed"]);
    expect(client.closeInfo).toMatchObject({ code: 1000, byApp: true });
    expect(FakeWebSocket.last().closedBy?.code).toBe(1000);
    // Closed means closed: no timer brings it back.
    vi.advanceTimersByTime(10 * 60_000);
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it("connect() after close() starts again and keeps the cursor", async () => {
    const { client } = newClient();
    client.subscribe("a", () => {});
    client.connect();
    FakeWebSocket.last().welcome({ seq: 10 });
    await flush();
    FakeWebSocket.last().events({ id: "x", seq: 12, channel: "a" });
    client.close();
    client.connect();
    FakeWebSocket.last().welcome({ seq: 20 });
    await flush();
    expect(FakeWebSocket.last().sentOfType("subscribe")[0].cursor).toEqual({ seq: 12, epoch: "E1" });
  });

  it("records time spent in each state", () => {
    const { client } = newClient();
    vi.advanceTimersByTime(100);
    client.connect();
    vi.advanceTimersByTime(200);
    FakeWebSocket.last().welcome();
    vi.advanceTimersByTime(3000);
    const h = client.health();
    expect(h.timeInStateMs.idle).toBe(100);
    expect(h.timeInStateMs.connecting).toBe(200);
    expect(h.timeInStateMs.open).toBe(3000);
    expect(h.state).toBe("open");
  });

  it("gives up on an attempt that gets no welcome within connectTimeoutMs", () => {
    const { client } = newClient({ connectTimeoutMs: 2000 });
    client.connect();
    const ws = FakeWebSocket.last();
    ws.open();
    vi.advanceTimersByTime(1999);
    expect(client.state).toBe("connecting");
    vi.advanceTimersByTime(1);
    expect(client.state).toBe("reconnecting");
    expect(ws.closedBy).not.toBeNull();
  });

  it("treats two heartbeat intervals of silence as a dead connection", () => {
    const { client } = newClient({ pingIntervalMs: 0 });
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome({ heartbeatMs: 1000 });
    vi.advanceTimersByTime(1500);
    ws.receive({ type: "ping", ts: 1 }); // any frame is life
    vi.advanceTimersByTime(1999);
    expect(client.state).toBe("open");
    vi.advanceTimersByTime(1);
    expect(client.state).toBe("reconnecting");
    expect(ws.sentOfType("pong")).toEqual([{ type: "pong", ts: 1 }]);
  });
});

describe("subscriptions and cursor", () => {
  it("multiplexes channels over one socket and coalesces subscribes of one tick", async () => {
    const { client } = newClient();
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome({ seq: 5 });
    const got: string[] = [];
    const offA = client.subscribe("a", (e) => got.push("a:" + e.id));
    client.subscribe("b", (e) => got.push("b:" + e.id));
    client.subscribe("a", (e) => got.push("a2:" + e.id));
    await flush();
    const subs = ws.sentOfType("subscribe");
    expect(subs).toHaveLength(1);
    expect(subs[0].channels).toEqual(["a", "b"]);
    // A fresh client's first subscribe resumes from the welcome's head.
    expect(subs[0].cursor).toEqual({ seq: 5, epoch: "E1" });
    ws.events({ id: "1", seq: 6, channel: "a" }, { id: "2", seq: 7, channel: "b" });
    expect(got).toEqual(["a:1", "a2:1", "b:2"]);
    offA();
    await flush();
    expect(ws.sentOfType("unsubscribe")).toHaveLength(0); // "a" still has a handler
    client.subscribe("c", () => {});
    await flush();
    const later = ws.sentOfType("subscribe")[1];
    expect(later.channels).toEqual(["c"]);
    expect(later.cursor).toBeUndefined(); // only the first subscribe of a connection carries a cursor
    expect(FakeWebSocket.instances).toHaveLength(1);
  });

  it("a fresh client's late first subscribe is live from then; its cursor starts at the first event", async () => {
    const { client } = newClient({ baselineWindowMs: 5000 });
    client.connect();
    let ws = FakeWebSocket.last();
    ws.welcome({ seq: 40, epoch: "E9", heartbeatMs: 0 });
    vi.advanceTimersByTime(60_000); // an hour-old head would replay what the app never asked for
    client.subscribe("late", () => {});
    await flush();
    expect(ws.sentOfType("subscribe")[0].cursor).toBeUndefined();
    expect(client.cursor).toBeNull();
    ws.events({ id: "l1", seq: 77, channel: "late" });
    expect(client.cursor).toEqual({ seq: 77, epoch: "E9" });
    ws.serverClose(1006);
    ws = nextSocket();
    ws.welcome({ seq: 90, epoch: "E9" });
    await flush();
    expect(ws.sentOfType("subscribe")[0]).toMatchObject({ channels: ["late"], cursor: { seq: 77, epoch: "E9" } });
  });

  it("unsubscribes a channel when its last handler goes", async () => {
    const { client } = newClient();
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome();
    const off = client.subscribe("a", () => {});
    await flush();
    off();
    off(); // idempotent
    await flush();
    expect(ws.sentOfType("unsubscribe")).toEqual([{ type: "unsubscribe", channels: ["a"] }]);
    expect(client.channels).toEqual([]);
  });

  it("resumes with ONE subscribe carrying every channel and the cursor from events", async () => {
    const { client } = newClient();
    client.subscribe("a", () => {});
    client.subscribe("b", () => {});
    client.connect();
    let ws = FakeWebSocket.last();
    ws.welcome({ seq: 100, epoch: "EP" });
    await flush();
    ws.events({ id: "e1", seq: 101, channel: "a" }, { id: "e2", seq: 140, channel: "b" });
    client.subscribe("c", () => {});
    await flush();
    ws.serverClose(1006);
    vi.advanceTimersByTime(1000);
    ws = FakeWebSocket.last();
    ws.welcome({ seq: 999, epoch: "EP" }); // welcome.seq never moves the cursor
    await flush();
    const subs = ws.sentOfType("subscribe");
    expect(subs).toHaveLength(1);
    expect(subs[0].channels.sort()).toEqual(["a", "b", "c"]);
    expect(subs[0].cursor).toEqual({ seq: 140, epoch: "EP" });
    // It is the first frame after welcome.
    expect(ws.sent[0].type).toBe("subscribe");
    expect(client.cursor).toEqual({ seq: 140, epoch: "EP" });
  });

  it("counts a recovered resume and keeps replayed events out of latency", async () => {
    const { client } = newClient();
    client.subscribe("a", () => {});
    client.connect();
    let ws = FakeWebSocket.last();
    ws.welcome({ seq: 1 });
    await flush();
    ws.events({ id: "e1", seq: 2, channel: "a" });
    ws.serverClose(4000);
    vi.advanceTimersByTime(1000);
    ws = FakeWebSocket.last();
    ws.welcome({ seq: 5 });
    await flush();
    ws.receive({ type: "subscribed", op: "subscribe", epoch: "E1", results: [{ channel: "a", ok: true }], recovery: { recovered: true, from: 3, to: 5, source: "memory" } });
    ws.events({ id: "e3", seq: 3, channel: "a", ts: Date.now() - 60_000 }, { id: "e5", seq: 5, channel: "a", ts: Date.now() - 60_000 });
    const h = client.health();
    expect(h.recoveries).toBe(1);
    expect(h.reconnects).toBe(1);
    expect(h.eventsReceived).toBe(3);
    expect(h.latencySamples).toBe(1); // only e1 was live
  });

  it("emits resync on recovered:false and continues with the new epoch", async () => {
    const { client } = newClient();
    client.subscribe("a", () => {});
    client.connect();
    let ws = FakeWebSocket.last();
    ws.welcome({ seq: 1, epoch: "OLD" });
    await flush();
    ws.events({ id: "e1", seq: 2, channel: "a" });
    const resyncs: unknown[] = [];
    client.on("resync", (r) => resyncs.push(r));
    ws.serverClose(1001);
    vi.advanceTimersByTime(1000);
    ws = FakeWebSocket.last();
    ws.welcome({ seq: 7, epoch: "NEW" });
    await flush();
    expect(ws.sentOfType("subscribe")[0].cursor).toEqual({ seq: 2, epoch: "OLD" });
    ws.receive({ type: "subscribed", op: "subscribe", epoch: "NEW", results: [{ channel: "a", ok: true }], recovery: { recovered: false, reason: "epoch_mismatch" } });
    expect(resyncs).toEqual([{ reason: "epoch_mismatch", channels: ["a"], epoch: "NEW" }]);
    expect(client.cursor).toEqual({ seq: 7, epoch: "NEW" });
    expect(client.health().notRecovered).toBe(1);
  });

  it("a quiet channel's cursor follows the server pings, so its resume after a busy period is recovered", async () => {
    const { client } = newClient();
    const resyncs: unknown[] = [];
    client.on("resync", (r) => resyncs.push(r));
    client.subscribe("quiet", () => {});
    client.connect();
    let ws = FakeWebSocket.last();
    ws.welcome({ seq: 10, epoch: "E1" });
    await flush();
    const first = ws.sentOfType("subscribe")[0];
    ws.receive({ type: "subscribed", id: first.id, op: "subscribe", epoch: "E1", results: [{ channel: "quiet", ok: true }], recovery: { recovered: true, from: 11, to: 10 } });
    ws.events({ id: "q0", seq: 11, channel: "quiet" });
    // Other channels move the bus on; the server's heartbeats say how far this connection is complete.
    ws.receive({ type: "ping", ts: 1, seq: 5_000, epoch: "E1" });
    ws.receive({ type: "ping", ts: 2, seq: 90_000, epoch: "E1" });
    expect(ws.sentOfType("pong").map((p) => p.ts)).toEqual([1, 2]);
    expect(client.cursor).toEqual({ seq: 90_000, epoch: "E1" });
    ws.serverClose(1006);
    ws = nextSocket();
    ws.welcome({ seq: 90_100, epoch: "E1" });
    await flush();
    expect(ws.sentOfType("subscribe")[0]).toMatchObject({ channels: ["quiet"], cursor: { seq: 90_000, epoch: "E1" } });
    ws.receive({ type: "subscribed", op: "subscribe", epoch: "E1", results: [{ channel: "quiet", ok: true }], recovery: { recovered: true, from: 90_001, to: 90_100, source: "bus" } });
    expect(resyncs).toEqual([]);
    expect(client.health().recoveries).toBe(1);
  });

  it("with an older server (pings without seq) the cursor stays at the last event", async () => {
    const { client } = newClient();
    client.subscribe("quiet", () => {});
    client.connect();
    let ws = FakeWebSocket.last();
    ws.welcome({ seq: 10, epoch: "E1" });
    await flush();
    ws.receive({ type: "subscribed", op: "subscribe", epoch: "E1", results: [{ channel: "quiet", ok: true }], recovery: { recovered: true, from: 11, to: 10 } });
    ws.events({ id: "q0", seq: 11, channel: "quiet" });
    ws.receive({ type: "ping", ts: 1 });
    expect(ws.sentOfType("pong")).toEqual([{ type: "pong", ts: 1 }]);
    expect(client.cursor).toEqual({ seq: 11, epoch: "E1" });
    ws.serverClose(1006);
    ws = nextSocket();
    ws.welcome({ seq: 90_100, epoch: "E1" });
    await flush();
    expect(ws.sentOfType("subscribe")[0].cursor).toEqual({ seq: 11, epoch: "E1" });
  });

  it("drops duplicates across reconnects but still advances the cursor", async () => {
    const { client } = newClient();
    const got: string[] = [];
    client.subscribe("a", (e: RealtimeEvent) => got.push(e.id));
    client.connect();
    let ws = FakeWebSocket.last();
    ws.welcome();
    await flush();
    ws.events({ id: "x", seq: 1, channel: "a" }, { id: "y", seq: 2, channel: "a" });
    ws.serverClose(1006);
    vi.advanceTimersByTime(1000);
    ws = FakeWebSocket.last();
    ws.welcome();
    await flush();
    ws.events({ id: "y", seq: 2, channel: "a" }, { id: "z", seq: 3, channel: "a" });
    expect(got).toEqual(["x", "y", "z"]);
    expect(client.health().duplicates).toBe(1);
    expect(client.cursor?.seq).toBe(3);
  });

  it("reports refused channels and error frames without dropping the connection", async () => {
    const { client, errors } = newClient();
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome();
    client.subscribe("bad channel", () => {});
    await flush();
    ws.receive({ type: "subscribed", op: "subscribe", results: [{ channel: "bad channel", ok: false, code: "bad_channel", error: "spaces" }] });
    ws.receive({ type: "error", code: "rate_limited", message: "slow down" });
    expect(errors).toEqual([
      { kind: "channel", channel: "bad channel", code: "bad_channel", message: "spaces" },
      { kind: "frame", code: "rate_limited", message: "slow down" },
    ]);
    expect(client.state).toBe("open");
  });

  it("re-subscribes channels refused for now (replay in progress, rate limited)", async () => {
    const { client, errors } = newClient();
    client.subscribe("a", () => {});
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome();
    await flush();
    client.subscribe("b", () => {});
    client.subscribe("c", () => {});
    await flush();
    const second = ws.sentOfType("subscribe")[1];
    expect(second.channels).toEqual(["b", "c"]);
    ws.receive({ type: "subscribed", id: second.id, op: "subscribe", results: [{ channel: "b", ok: false, code: "replay_in_progress" }, { channel: "c", ok: true }] });
    vi.advanceTimersByTime(500); // 250 + 0.5 * 250
    const third = ws.sentOfType("subscribe")[2];
    expect(third.channels).toEqual(["b"]);
    expect(third.cursor).toBeUndefined();
    // A whole frame refused by an error frame carrying its id.
    ws.receive({ type: "error", id: third.id, code: "rate_limited", message: "slow down" });
    vi.advanceTimersByTime(500);
    expect(ws.sentOfType("subscribe")[3].channels).toEqual(["b"]);
    expect(errors).toEqual([]);
  });

  it("a throwing handler does not stop other handlers", async () => {
    const { client, errors } = newClient();
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome();
    const got: string[] = [];
    client.subscribe("a", () => {
      throw new Error("boom");
    });
    client.subscribe("a", (e) => got.push(e.id));
    await flush();
    ws.events({ id: "1", seq: 1, channel: "a" });
    expect(got).toEqual(["1"]);
    expect(errors).toHaveLength(1);
  });
});

describe("app controls", () => {
  it("setToken sends an auth frame on an open stream and uses the token for the next connection", async () => {
    const { client } = newClient({ token: "t1" });
    client.connect();
    const ws = FakeWebSocket.last();
    expect(ws.url).toBe(URL + "?token=t1");
    ws.welcome();
    client.setToken("t 2");
    expect(ws.sentOfType("auth")).toEqual([{ type: "auth", token: "t 2" }]);
    ws.serverClose(1006);
    expect(nextSocket().url).toBe(URL + "?token=t%202");
  });

  it("reconnect() drops the connection and connects at once, keeping the cursor", async () => {
    const { client } = newClient();
    client.subscribe("a", () => {});
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome({ seq: 3 });
    await flush();
    ws.events({ id: "e", seq: 9, channel: "a" });
    client.reconnect();
    expect(ws.closedBy?.code).toBe(1000);
    expect(FakeWebSocket.instances).toHaveLength(2);
    FakeWebSocket.last().welcome({ seq: 9 });
    await flush();
    expect(FakeWebSocket.last().sentOfType("subscribe")[0].cursor).toEqual({ seq: 9, epoch: "E1" });
  });

  it("a malformed frame or event is reported and skipped", async () => {
    const { client, errors } = newClient();
    const got: string[] = [];
    client.subscribe("a", (e) => got.push(e.id));
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome();
    await flush();
    ws.onmessage?.({ data: "{not json" });
    ws.receive({ type: "events", events: [{ seq: 1, channel: "a" }, { id: "ok", seq: 2, channel: "a" }] });
    ws.receive({ type: "from-the-future", x: 1 }); // unknown frame types are ignored
    expect(got).toEqual(["ok"]);
    expect(errors.map((e: any) => e.kind)).toEqual(["protocol", "protocol"]);
    expect(client.state).toBe("open");
  });
});

describe("close codes", () => {
  async function closeWith(code: number, reason = "", extra: Partial<RealtimeClientOptions> = {}) {
    const t = newClient(extra);
    t.client.subscribe("a", () => {});
    t.client.connect();
    FakeWebSocket.last().welcome();
    await flush();
    FakeWebSocket.last().serverClose(code, reason);
    return t;
  }

  for (const code of [1001, 1006, 1011, 4000, 4001, 4099]) {
    it(`${code}: reconnects with backoff`, async () => {
      const { client } = await closeWith(code);
      expect(client.state).toBe("reconnecting");
      vi.advanceTimersByTime(499);
      expect(FakeWebSocket.instances).toHaveLength(1);
      vi.advanceTimersByTime(1);
      expect(FakeWebSocket.instances).toHaveLength(2);
    });
  }

  for (const code of [4100, 4101, 4102, 4103, 4104]) {
    it(`${code}: waits for retry=<ms> plus jitter`, async () => {
      const { client } = await closeWith(code, "slow consumer retry=4000");
      expect(client.state).toBe("reconnecting");
      vi.advanceTimersByTime(5999); // 4000 + 0.5*4000
      expect(FakeWebSocket.instances).toHaveLength(1);
      vi.advanceTimersByTime(1);
      expect(FakeWebSocket.instances).toHaveLength(2);
    });
  }

  it("4100 without a hint falls back to backoff", async () => {
    await closeWith(4100, "slow");
    vi.advanceTimersByTime(500);
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it("4200: refreshes the token, then reconnects with it", async () => {
    const refreshToken = vi.fn(async () => "fresh-token");
    const { client } = await closeWith(4200, "token expired", { token: "old", refreshToken });
    expect(client.state).toBe("reconnecting");
    await flush();
    expect(refreshToken).toHaveBeenCalledOnce();
    expect(FakeWebSocket.instances).toHaveLength(2);
    expect(FakeWebSocket.instances[0].url).toBe(URL + "?token=old");
    expect(FakeWebSocket.last().url).toBe(URL + "?token=fresh-token");
  });

  it("4200 without refreshToken stops", async () => {
    const { client, errors } = await closeWith(4200, "token expired");
    expect(client.state).toBe("closed");
    expect(client.closeInfo).toMatchObject({ code: 4200, byApp: false });
    expect(errors).toHaveLength(1);
  });

  it("4200: a failing refresh is retried with backoff", async () => {
    let n = 0;
    const refreshToken = vi.fn(async () => {
      if (++n === 1) throw new Error("auth server down");
      return "t2";
    });
    await closeWith(4200, "", { refreshToken });
    await flush();
    expect(FakeWebSocket.instances).toHaveLength(1);
    vi.advanceTimersByTime(500);
    await flush();
    expect(refreshToken).toHaveBeenCalledTimes(2);
    expect(FakeWebSocket.last().url).toBe(URL + "?token=t2");
  });

  for (const code of [1000, 1009, 4400, 4401, 4403, 4499]) {
    it(`${code}: never reconnects`, async () => {
      const closed: unknown[] = [];
      const t = newClient();
      t.client.on("closed", (i) => closed.push(i));
      t.client.connect();
      FakeWebSocket.last().welcome();
      FakeWebSocket.last().serverClose(code, "nope");
      expect(t.client.state).toBe("closed");
      expect(closed).toEqual([{ code, reason: "nope", byApp: false }]);
      vi.advanceTimersByTime(60 * 60_000);
      expect(FakeWebSocket.instances).toHaveLength(1);
    });
  }

  it("4300: switches to long-polling and probes the stream after retry=<ms>", async () => {
    const polls: string[] = [];
    const fetch = vi.fn(async (url: string) => {
      polls.push(url);
      return new Response(JSON.stringify({ events: [], cursor: { seq: 0, epoch: "E1" }, transport: "poll" }), { status: 200 });
    });
    const { client } = await closeWith(4300, "streaming off retry=30000", { fetch: fetch as any });
    expect(client.state).toBe("polling");
    expect(client.transport).toBe("poll");
    await flush();
    expect(polls[0]).toBe("http://127.0.0.1:9/v2/realtime/poll?channels=a&cursor=0.E1");
    vi.advanceTimersByTime(29_999);
    expect(FakeWebSocket.instances).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(FakeWebSocket.instances).toHaveLength(2);
    expect(client.state).toBe("polling"); // still polling while the probe connects
    FakeWebSocket.last().welcome();
    expect(client.state).toBe("open");
    expect(client.transport).toBe("stream");
  });

  it("backoff-range close with no welcome counts toward the breaker", async () => {
    const { client } = newClient({ breakerThreshold: 3 });
    client.connect();
    for (let i = 0; i < 2; i++) {
      FakeWebSocket.last().serverClose(1006);
      expect(client.state).toBe("reconnecting");
      nextSocket();
    }
    FakeWebSocket.last().serverClose(1006);
    expect(client.state).toBe("polling");
  });
});

describe("backoff in the client", () => {
  it("grows the delay between failed attempts and caps it at 5 minutes", () => {
    const { client } = newClient({ random: () => 0.999999, breakerThreshold: 0 });
    client.connect();
    const delays: number[] = [];
    for (let i = 0; i < 14; i++) {
      const before = Date.now();
      FakeWebSocket.last().serverClose(1006);
      const n = FakeWebSocket.instances.length;
      while (FakeWebSocket.instances.length === n) vi.advanceTimersByTime(100);
      delays.push(Date.now() - before);
    }
    expect(delays.slice(0, 4)).toEqual([1000, 2000, 4000, 8000]);
    expect(Math.max(...delays)).toBe(300_000);
    expect(delays.at(-1)).toBe(300_000);
    expect(client.state).toBe("connecting");
  });

  it("a connection that stayed open resets the sequence", () => {
    const { client } = newClient({ random: () => 0.999999, stableAfterMs: 5000 });
    client.connect();
    for (let i = 0; i < 3; i++) {
      FakeWebSocket.last().serverClose(1006);
      nextSocket();
    }
    FakeWebSocket.last().welcome();
    vi.advanceTimersByTime(5000);
    FakeWebSocket.last().serverClose(1006);
    const n = FakeWebSocket.instances.length;
    vi.advanceTimersByTime(998); // floor(0.999999 * 1000) = 999: the attempt-0 ceiling again
    expect(FakeWebSocket.instances).toHaveLength(n);
    vi.advanceTimersByTime(1);
    expect(FakeWebSocket.instances).toHaveLength(n + 1);
  });
});

describe("offline", () => {
  it("pauses while offline and reconnects at once when back online", () => {
    const { client, network, states } = newClient();
    client.connect();
    FakeWebSocket.last().welcome();
    network.set(false);
    expect(client.state).toBe("offline");
    expect(FakeWebSocket.last().closedBy).not.toBeNull();
    vi.advanceTimersByTime(10 * 60_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    network.set(true);
    expect(client.state).toBe("connecting");
    expect(FakeWebSocket.instances).toHaveLength(2);
    expect(states).toEqual(["connecting", "open", "offline", "connecting"]);
  });

  it("cancels a pending reconnect while offline", () => {
    const { client, network } = newClient();
    client.connect();
    FakeWebSocket.last().serverClose(1006);
    expect(client.state).toBe("reconnecting");
    network.set(false);
    vi.advanceTimersByTime(60_000);
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(client.state).toBe("offline");
  });

  it("starts offline when the browser is offline at connect", () => {
    const network = new FakeNetwork(false);
    const client = new RealtimeClient({ url: URL, WebSocket: FakeWebSocket, network });
    client.connect();
    expect(client.state).toBe("offline");
    expect(FakeWebSocket.instances).toHaveLength(0);
    network.set(true);
    expect(client.state).toBe("connecting");
    client.close();
    expect(network.listeners).toBe(0);
  });
});

describe("health", () => {
  it("measures RTT and clock offset from ping/pong and corrects latency by it", async () => {
    const { client } = newClient({ pingIntervalMs: 10_000 });
    client.subscribe("a", () => {});
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome();
    await flush();
    const ping = ws.sentOfType("ping")[0];
    expect(ping.ts).toBe(Date.now());
    vi.advanceTimersByTime(40);
    // Server clock runs 5000 ms ahead; it answered half way through the round trip.
    ws.receive({ type: "pong", ts: ping.ts, serverTime: ping.ts + 20 + 5000 });
    let h = client.health();
    expect(h.rttMs).toBe(40);
    expect(h.clockOffsetMs).toBe(5000);
    // Published 30 ms ago by the server's clock.
    const serverNow = Date.now() + 5000;
    ws.events({ id: "l1", seq: 1, channel: "a", ts: serverNow - 30 });
    ws.events({ id: "l2", seq: 2, channel: "a", ts: serverNow - 80 });
    h = client.health();
    expect(h.latencyP50Ms).toBe(30);
    expect(h.latencyP99Ms).toBe(80);
    vi.advanceTimersByTime(10_000);
    expect(ws.sentOfType("ping")).toHaveLength(2);
  });

  it("keeps the latency window bounded", async () => {
    const { client } = newClient({ latencyWindow: 16 });
    client.subscribe("a", () => {});
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome();
    await flush();
    for (let i = 1; i <= 100; i++) ws.events({ id: "e" + i, seq: i, channel: "a", ts: Date.now() - i });
    const h = client.health();
    expect(h.latencySamples).toBe(16);
    expect(h.latencyP50Ms).toBeGreaterThanOrEqual(85); // only the last 16 (85..100 ms) remain
  });

  it("sends a first health frame healthFirstMs after welcome, then every healthIntervalMs", async () => {
    const { client } = newClient({ healthIntervalMs: 5000 });
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome();
    vi.advanceTimersByTime(3000); // default healthFirstMs
    const frames = ws.sentOfType("health");
    expect(frames).toHaveLength(1);
    expect(frames[0].health).toMatchObject({ reconnects: 0, recoveries: 0, eventsReceived: 0, duplicates: 0, transport: "stream" });
    expect(Object.keys(frames[0].health).sort()).toEqual(
      ["clockOffsetMs", "duplicates", "eventsReceived", "latencyP50Ms", "latencyP99Ms", "reconnects", "recoveries", "rttMs", "transport"],
    );
    vi.advanceTimersByTime(12_000); // at 5 s, 10 s and 15 s
    expect(ws.sentOfType("health")).toHaveLength(4);
  });

  it("emits health on state changes and, throttled, on event traffic", async () => {
    const { client } = newClient({ healthEmitMs: 1000 });
    const seen: number[] = [];
    client.on("health", (h) => seen.push(h.eventsReceived));
    client.subscribe("a", () => {});
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome();
    await flush();
    const base = seen.length;
    for (let i = 1; i <= 50; i++) ws.events({ id: "e" + i, seq: i, channel: "a" });
    expect(seen.length).toBe(base);
    vi.advanceTimersByTime(1000);
    expect(seen.length).toBe(base + 1);
    expect(seen.at(-1)).toBe(50);
    expect(client.lastHealth.eventsReceived).toBe(50);
  });
});

describe("long-polling fallback", () => {
  it("switches after N consecutive stream failures, delivers polled events once, and moves back", async () => {
    const server = pollServer([
      json({ events: [{ id: "p1", seq: 11, channel: "a", ts: Date.now() }], cursor: { seq: 11, epoch: "E1" }, transport: "poll" }),
      json({ events: [{ id: "p1", seq: 11, channel: "a", ts: Date.now() }, { id: "p2", seq: 12, channel: "a", ts: Date.now() }], cursor: { seq: 12, epoch: "E1" }, transport: "poll" }),
    ]);
    const { client, states } = newClient({ fetch: server.fetch as any, breakerThreshold: 3, probeIntervalMs: 20_000, token: "tk" });
    const got: string[] = [];
    const transports: string[] = [];
    client.on("transport", (t) => transports.push(t));
    client.subscribe("a", (e) => got.push(e.id));
    client.subscribe("b", () => {});
    client.connect();
    FakeWebSocket.last().welcome({ seq: 10 });
    await flush();
    FakeWebSocket.last().serverClose(1006); // was open: not a failure
    for (let i = 0; i < 3; i++) {
      nextSocket().serverClose(1006); // never welcomed: failures 1..3
    }
    expect(client.state).toBe("polling");
    expect(transports).toEqual(["poll"]);
    await vi.advanceTimersByTimeAsync(0);
    expect(server.urls[0]).toBe("http://127.0.0.1:9/v2/realtime/poll?channels=a,b&cursor=10.E1&token=tk");
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(1000); // idle delay after a quick answer
    expect(server.urls[1]).toContain("cursor=11.E1");
    expect(got).toEqual(["p1", "p2"]);
    expect(client.health().duplicates).toBe(1);
    expect(client.health().transport).toBe("poll");
    // Probe after probeIntervalMs; the stream answers, the client moves back.
    const before = FakeWebSocket.instances.length;
    await vi.advanceTimersByTimeAsync(20_000);
    expect(FakeWebSocket.instances.length).toBe(before + 1);
    FakeWebSocket.last().welcome({ seq: 12 });
    await flush();
    expect(client.state).toBe("open");
    expect(transports).toEqual(["poll", "stream"]);
    expect(FakeWebSocket.last().sentOfType("subscribe")[0]).toMatchObject({ channels: ["a", "b"], cursor: { seq: 12, epoch: "E1" } });
    expect(states).toContain("polling");
  });

  it("a transport frame moves to polling at once and retryMs sets the probe", async () => {
    const server = pollServer([]);
    const { client } = newClient({ fetch: server.fetch as any });
    client.subscribe("a", () => {});
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome();
    await flush();
    ws.receive({ type: "transport", transport: "poll", retryMs: 5000, reason: "flag off" });
    expect(client.state).toBe("polling");
    expect(ws.closedBy).not.toBeNull();
    ws.serverClose(4300, "retry=5000"); // the server's close after the hint changes nothing
    expect(client.state).toBe("polling");
    await vi.advanceTimersByTimeAsync(4999);
    expect(FakeWebSocket.instances).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it("a failed probe keeps polling and probes again later", async () => {
    const server = pollServer([]);
    const { client } = newClient({ fetch: server.fetch as any, probeIntervalMs: 10_000 });
    client.subscribe("a", () => {});
    client.connect();
    FakeWebSocket.last().welcome();
    await flush();
    FakeWebSocket.last().serverClose(4300);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(FakeWebSocket.instances).toHaveLength(2);
    FakeWebSocket.last().serverClose(4300, "still off retry=15000");
    expect(client.state).toBe("polling");
    await vi.advanceTimersByTimeAsync(14_999);
    expect(FakeWebSocket.instances).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(FakeWebSocket.instances).toHaveLength(3);
  });

  it("transport:\"stream\" in a poll answer probes the stream at once", async () => {
    const server = pollServer([json({ events: [], cursor: { seq: 3, epoch: "E1" }, transport: "stream" })]);
    const { client } = newClient({ fetch: server.fetch as any });
    client.subscribe("a", () => {});
    client.connect();
    FakeWebSocket.last().welcome();
    await flush();
    FakeWebSocket.last().serverClose(4300);
    await vi.advanceTimersByTimeAsync(0);
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it("polling because the stream fails: transport:\"stream\" answers do not trigger probes, and failed probes back off", async () => {
    const stream = json({ events: [], cursor: { seq: 3, epoch: "E1" }, transport: "stream" });
    const server = pollServer([stream, stream, stream, stream, stream]);
    const { client } = newClient({ fetch: server.fetch as any, breakerThreshold: 3, probeIntervalMs: 10_000, probeMaxMs: 40_000 });
    client.subscribe("a", () => {});
    client.connect();
    FakeWebSocket.last().serverClose(1006); // a proxy refuses WebSockets: failures 1..3
    nextSocket().serverClose(1006);
    nextSocket().serverClose(1006);
    expect(client.state).toBe("polling");
    const sockets = FakeWebSocket.instances.length;
    await vi.advanceTimersByTimeAsync(5_000); // five polls answered "stream": no probe
    expect(server.urls.length).toBeGreaterThanOrEqual(5);
    expect(FakeWebSocket.instances.length).toBe(sockets);
    await vi.advanceTimersByTimeAsync(5_000); // the scheduled probe at 10 s
    expect(FakeWebSocket.instances.length).toBe(sockets + 1);
    // Each failed probe doubles the wait: 20 s, then 40 s (the cap), then 40 s.
    for (const wait of [20_000, 40_000, 40_000]) {
      FakeWebSocket.last().serverClose(1006);
      expect(client.state).toBe("polling");
      const n = FakeWebSocket.instances.length;
      await vi.advanceTimersByTimeAsync(wait - 1);
      expect(FakeWebSocket.instances.length).toBe(n);
      await vi.advanceTimersByTimeAsync(1);
      expect(FakeWebSocket.instances.length).toBe(n + 1);
    }
    // The stream works again: back on it, and a later switch starts from the interval.
    FakeWebSocket.last().welcome({ seq: 3 });
    await flush();
    expect(client.state).toBe("open");
  });

  it("a poll answered recovered:false emits resync", async () => {
    const server = pollServer([json({ events: [], cursor: { seq: 50, epoch: "E2" }, recovery: { recovered: false, reason: "too_old" }, transport: "poll" })]);
    const { client } = newClient({ fetch: server.fetch as any });
    const resyncs: unknown[] = [];
    client.on("resync", (r) => resyncs.push(r));
    client.subscribe("a", () => {});
    client.connect();
    FakeWebSocket.last().welcome();
    await flush();
    FakeWebSocket.last().serverClose(4300);
    await vi.advanceTimersByTimeAsync(0);
    expect(resyncs).toEqual([{ reason: "too_old", channels: ["a"], epoch: "E2" }]);
    expect(client.cursor).toEqual({ seq: 50, epoch: "E2" });
  });

  it("HTTP statuses of the poll endpoint follow the close-code actions", async () => {
    // 503 with Retry-After: wait that long (plus jitter); 403: stop.
    const server = pollServer([json({}, 503, { "Retry-After": "2" }), json({}, 403)]);
    const { client } = newClient({ fetch: server.fetch as any });
    client.subscribe("a", () => {});
    client.connect();
    FakeWebSocket.last().welcome();
    await flush();
    FakeWebSocket.last().serverClose(4300);
    await vi.advanceTimersByTimeAsync(0);
    expect(server.urls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(2999); // 2000 + 0.5 * 2000
    expect(server.urls).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(server.urls).toHaveLength(2);
    expect(client.state).toBe("closed");
  });

  it("goes back to the stream when the server has no poll endpoint (404)", async () => {
    const server = pollServer([json({}, 404)]);
    const { client } = newClient({ fetch: server.fetch as any });
    client.subscribe("a", () => {});
    client.connect();
    FakeWebSocket.last().welcome();
    await flush();
    FakeWebSocket.last().serverClose(4300);
    await vi.advanceTimersByTimeAsync(0);
    expect(client.transport).toBe("stream");
    expect(client.state).toBe("reconnecting");
  });

  it("a new subscription restarts the pending long-poll with every channel", async () => {
    const server = pollServer([]);
    const { client } = newClient({ fetch: server.fetch as any });
    client.subscribe("a", () => {});
    client.connect();
    FakeWebSocket.last().welcome();
    await flush();
    FakeWebSocket.last().serverClose(4300);
    await vi.advanceTimersByTimeAsync(0);
    client.subscribe("b", () => {});
    await vi.advanceTimersByTimeAsync(0);
    expect(server.urls).toHaveLength(2);
    expect(server.urls[1]).toContain("channels=a,b");
  });
});
