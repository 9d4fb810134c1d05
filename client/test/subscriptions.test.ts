import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Emitter } from "../src/emitter.js";
import type { ClientEvents } from "../src/events.js";
import { HealthMonitor } from "../src/health.js";
import { Subscriptions } from "../src/subscriptions.js";
import type { RealtimeEvent, WelcomeFrame } from "../src/types.js";

const welcome = (seq = 0, epoch = "E1") => ({ type: "welcome", seq, epoch, heartbeatMs: 0 }) as WelcomeFrame;

/** newSubs returns Subscriptions whose sent frames and emitted events are recorded. */
function newSubs(opts: { open?: boolean; send?: boolean } = {}) {
  const sent: any[] = [];
  const emitted: Array<[string, unknown]> = [];
  const emitter = new Emitter<ClientEvents>();
  for (const name of ["error", "subscribed", "resync"] as const) emitter.on(name, (x: any) => emitted.push([name, x]));
  const monitor = new HealthMonitor(Date.now, 16);
  let healthChanges = 0;
  const subs = new Subscriptions({ now: Date.now, random: () => 0, baselineWindowMs: 5000 }, monitor, emitter, {
    send: (f) => {
      if (opts.send === false) return false;
      sent.push(f);
      return true;
    },
    open: () => opts.open ?? true,
    healthChanged: () => healthChanges++,
  });
  const of = (type: string) => sent.filter((f) => f.type === type);
  return { subs, sent, of, emitted, monitor, health: () => healthChanges };
}

const ev = (id: string, seq: number, channel = "a", ts = 0): RealtimeEvent => ({ id, seq, channel, ts });

beforeEach(() => vi.useFakeTimers({ now: 1_700_000_000_000 }));
afterEach(() => vi.useRealTimers());

describe("Subscriptions: handlers", () => {
  it("reports when a channel is new and when it loses its last handler", () => {
    const { subs } = newSubs();
    const h1 = () => {};
    const h2 = () => {};
    expect(subs.add("a", h1)).toBe(true);
    expect(subs.add("a", h2)).toBe(false);
    expect(subs.add("b", h1)).toBe(true);
    expect(subs.channels).toEqual(["a", "b"]);
    expect(subs.remove("a", h1)).toBe(false);
    expect(subs.remove("a", h2)).toBe(true);
    expect(subs.remove("a", h2)).toBe(false);
    expect(subs.channels).toEqual(["b"]);
  });
});

describe("Subscriptions: the connection's subscribe frames", () => {
  it("sends nothing without a welcomed connection, or while the client is not open", () => {
    const t = newSubs();
    t.subs.add("a", () => {});
    t.subs.flush();
    expect(t.sent).toEqual([]);
    const closed = newSubs({ open: false });
    closed.subs.add("a", () => {});
    closed.subs.begin(welcome(), Date.now());
    closed.subs.flush();
    expect(closed.sent).toEqual([]);
  });

  it("a fresh client's first subscribe carries every channel and the welcome's head", () => {
    const { subs, of } = newSubs();
    subs.add("a", () => {});
    subs.add("b", () => {});
    subs.begin(welcome(5), Date.now());
    subs.flush();
    subs.flush(); // nothing new
    expect(of("subscribe")).toEqual([{ type: "subscribe", id: expect.stringMatching(/^s\d+$/), channels: ["a", "b"], cursor: { seq: 5, epoch: "E1" } }]);
    expect(subs.cursor.value).toEqual({ seq: 5, epoch: "E1" });
    subs.add("c", () => {});
    subs.flush();
    expect(of("subscribe")[1]).toEqual({ type: "subscribe", id: expect.any(String), channels: ["c"] });
  });

  it("a first subscribe long after welcome carries no cursor", () => {
    const { subs, of } = newSubs();
    subs.begin(welcome(5), Date.now());
    vi.advanceTimersByTime(5001);
    subs.add("a", () => {});
    subs.flush();
    expect(of("subscribe")[0].cursor).toBeUndefined();
    expect(subs.cursor.value).toBeNull();
  });

  it("a resume carries the cursor from events, never the welcome's head", () => {
    const { subs, of } = newSubs();
    subs.add("a", () => {});
    subs.begin(welcome(1), Date.now());
    subs.flush();
    subs.onEvents({ type: "events", events: [ev("x", 9)] }, Date.now());
    subs.end();
    subs.begin(welcome(99), Date.now());
    subs.flush();
    expect(of("subscribe")[1]).toMatchObject({ channels: ["a"], cursor: { seq: 9, epoch: "E1" } });
  });

  it("unsubscribes channels that lost their handlers", () => {
    const { subs, of } = newSubs();
    const h = () => {};
    subs.add("a", h);
    subs.add("b", h);
    subs.begin(welcome(), Date.now());
    subs.flush();
    subs.remove("a", h);
    subs.flush();
    expect(of("unsubscribe")).toEqual([{ type: "unsubscribe", channels: ["a"] }]);
  });

  it("a subscribe that did not go out is sent again on the next flush", () => {
    const link = { send: false };
    const t = newSubs(link);
    t.subs.add("a", () => {});
    t.subs.begin(welcome(7), Date.now());
    t.subs.flush();
    expect(t.sent).toEqual([]);
    link.send = true;
    t.subs.flush();
    expect(t.of("subscribe")).toEqual([expect.objectContaining({ channels: ["a"], cursor: { seq: 7, epoch: "E1" } })]);
  });

  it("keeps at most 64 subscribe frames waiting for an answer", () => {
    const { subs, of } = newSubs();
    subs.begin(welcome(), Date.now());
    for (let i = 0; i < 70; i++) {
      subs.add("c" + i, () => {});
      subs.flush();
    }
    expect(of("subscribe")).toHaveLength(70);
    expect((subs as any).session.pending.size).toBe(64);
  });
});

describe("Subscriptions: the server's answers", () => {
  function subscribed(extra = {}) {
    const t = newSubs();
    t.subs.add("a", () => {});
    t.subs.add("b", () => {});
    t.subs.begin(welcome(3, "E1"), Date.now());
    t.subs.flush();
    const id = t.of("subscribe")[0].id;
    return { ...t, id, ...extra };
  }

  it("emits subscribed for accepted channels and an error for each refused one", () => {
    const { subs, emitted, id } = subscribed();
    subs.onSubscribed({
      type: "subscribed",
      id,
      op: "subscribe",
      results: [{ channel: "a", ok: true }, { channel: "b", ok: false, code: "forbidden", error: "no" }],
    });
    expect(emitted).toEqual([
      ["error", { kind: "channel", channel: "b", code: "forbidden", message: "no" }],
      ["subscribed", ["a"]],
    ]);
  });

  it("asks again for channels refused for now, after 250-500 ms, on the same connection", () => {
    const { subs, of, emitted, id } = subscribed();
    subs.onSubscribed({ type: "subscribed", id, op: "subscribe", results: [{ channel: "a", ok: false, code: "replay_in_progress" }, { channel: "b", ok: true }] });
    expect(emitted).toEqual([["subscribed", ["b"]]]);
    vi.advanceTimersByTime(249);
    expect(of("subscribe")).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(of("subscribe")[1]).toMatchObject({ channels: ["a"] });
    expect(of("subscribe")[1].cursor).toBeUndefined();
  });

  it("a retry is dropped with its connection", () => {
    const { subs, of, id } = subscribed();
    subs.onSubscribed({ type: "subscribed", id, op: "subscribe", results: [{ channel: "a", ok: false, code: "rate_limited" }] });
    subs.end();
    vi.advanceTimersByTime(1000);
    expect(of("subscribe")).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("an error frame answering a subscribe unsubscribes its channels (or retries them)", () => {
    const { subs, of, emitted, id } = subscribed();
    subs.onErrorFrame({ type: "error", id, code: "bad_frame", message: "too many" });
    expect(emitted).toEqual([["error", { kind: "frame", code: "bad_frame", message: "too many" }]]);
    subs.flush(); // the channels are not subscribed: they go out again
    const again = of("subscribe")[1];
    expect(again.channels).toEqual(["a", "b"]);
    subs.onErrorFrame({ type: "error", id: again.id, code: "rate_limited", message: "slow down" });
    expect(emitted).toHaveLength(1); // refused for now: retried, not reported
    vi.advanceTimersByTime(500);
    expect(of("subscribe")).toHaveLength(3);
  });

  it("counts a recovered resume and leaves replayed events out of latency", () => {
    const { subs, monitor, health } = subscribed();
    subs.onEvents({ type: "events", events: [ev("x", 4, "a", Date.now())] }, Date.now()); // live
    subs.end();
    subs.begin(welcome(9, "E1"), Date.now());
    subs.flush();
    subs.onSubscribed({ type: "subscribed", op: "subscribe", results: [], recovery: { recovered: true, from: 5, to: 8 } });
    subs.onEvents({ type: "events", events: [ev("y", 6, "a", Date.now() - 1000), ev("z", 10, "b", Date.now())] }, Date.now());
    const h = monitor.snapshot();
    expect(h.recoveries).toBe(1);
    expect(h.latencySamples).toBe(2); // x and z; y was replayed
    expect(health()).toBe(1);
  });

  it("a baseline subscribe answered recovered is not counted as a recovery", () => {
    const { subs, monitor } = subscribed();
    subs.onSubscribed({ type: "subscribed", op: "subscribe", results: [], recovery: { recovered: true, to: 3 } });
    expect(monitor.snapshot().recoveries).toBe(0);
  });

  it("recovered:false emits resync with the first subscribe's channels and takes the server's epoch", () => {
    const { subs, emitted, monitor } = subscribed();
    subs.onSubscribed({ type: "subscribed", op: "subscribe", epoch: "E2", results: [], recovery: { recovered: false, reason: "epoch_mismatch" } });
    expect(emitted).toEqual([["resync", { reason: "epoch_mismatch", channels: ["a", "b"], epoch: "E2" }]]);
    expect(subs.cursor.value).toEqual({ seq: 3, epoch: "E2" });
    expect(monitor.snapshot().notRecovered).toBe(1);
  });
});

describe("Subscriptions: server pings carry the head", () => {
  const ping = (seq?: number, epoch?: string) => ({ type: "ping" as const, ts: 1, seq, epoch });

  it("moves the cursor only once the first subscribe is answered, in its epoch, forwards", () => {
    const { subs, of } = newSubs();
    subs.add("quiet", () => {});
    subs.begin(welcome(10, "E1"), Date.now());
    subs.flush();
    expect(of("subscribe")[0].cursor).toEqual({ seq: 10, epoch: "E1" });
    subs.onPing(ping(50, "E1")); // may precede events the subscribe recovers
    expect(subs.cursor.value).toEqual({ seq: 10, epoch: "E1" });
    subs.onSubscribed({ type: "subscribed", id: of("subscribe")[0].id, op: "subscribe", epoch: "E1", results: [{ channel: "quiet", ok: true }], recovery: { recovered: true, from: 11, to: 50 } });
    subs.onPing(ping(60, "E2"));
    subs.onPing(ping()); // an older server
    expect(subs.cursor.value).toEqual({ seq: 10, epoch: "E1" });
    subs.onPing(ping(60, "E1"));
    expect(subs.cursor.value).toEqual({ seq: 60, epoch: "E1" });
    subs.onPing(ping(55, "E1"));
    subs.onEvents({ type: "events", events: [ev("late", 58, "quiet")] }, Date.now());
    expect(subs.cursor.value).toEqual({ seq: 60, epoch: "E1" });
    // The next connection resumes from it.
    subs.end();
    subs.begin(welcome(70, "E1"), Date.now());
    subs.onPing(ping(80, "E1")); // nothing answered on this connection yet
    subs.flush();
    expect(of("subscribe")[1]).toMatchObject({ channels: ["quiet"], cursor: { seq: 60, epoch: "E1" } });
  });

  it("gives a client with a late first subscribe its first position", () => {
    const { subs, of } = newSubs();
    subs.begin(welcome(10, "E1"), Date.now());
    subs.onPing(ping(20, "E1")); // no channel: nothing to resume
    expect(subs.cursor.value).toBeNull();
    vi.advanceTimersByTime(60_000);
    subs.add("late", () => {});
    subs.flush();
    expect(of("subscribe")[0].cursor).toBeUndefined();
    subs.onSubscribed({ type: "subscribed", id: of("subscribe")[0].id, op: "subscribe", epoch: "E1", results: [{ channel: "late", ok: true }] });
    subs.onPing(ping(90, "E0"));
    expect(subs.cursor.value).toBeNull();
    subs.onPing(ping(90, "E1"));
    expect(subs.cursor.value).toEqual({ seq: 90, epoch: "E1" });
  });
});

describe("Subscriptions: delivery", () => {
  it("calls every handler of the channel once per event ID and advances the cursor on duplicates too", () => {
    const { subs, monitor } = newSubs();
    const got: string[] = [];
    subs.add("a", (e) => got.push("1:" + e.id));
    subs.add("a", (e) => got.push("2:" + e.id));
    subs.begin(welcome(0), Date.now());
    subs.onEvents({ type: "events", events: [ev("x", 1), ev("x", 2), ev("y", 3, "other")] }, Date.now());
    expect(got).toEqual(["1:x", "2:x"]);
    expect(subs.cursor.value).toEqual({ seq: 3, epoch: "E1" });
    expect(monitor.snapshot()).toMatchObject({ duplicates: 1, eventsReceived: 2 });
  });

  it("reports malformed events and throwing handlers, and goes on", () => {
    const { subs, emitted } = newSubs();
    const got: string[] = [];
    subs.add("a", () => {
      throw new Error("boom");
    });
    subs.add("a", (e) => got.push(e.id));
    expect(subs.onEvents({ type: "events", events: [{ id: 1 } as any, ev("x", 1)] }, Date.now())).toBe(true);
    expect(subs.onEvents({ type: "events" } as any, Date.now())).toBe(false);
    expect(got).toEqual(["x"]);
    expect(emitted).toEqual([
      ["error", { kind: "protocol", message: "malformed event" }],
      ["error", expect.objectContaining({ kind: "handler", channel: "a", message: "Error: boom" })],
    ]);
  });

  it("applyPoll handles recovery, then events, then the answer's cursor", () => {
    const { subs, emitted } = newSubs();
    const got: number[] = [];
    subs.add("a", (e) => got.push(e.seq));
    const n = subs.applyPoll(
      { events: [ev("p1", 11), ev("p2", 12)], cursor: { seq: 20, epoch: "E2" }, recovery: { recovered: false, reason: "too_old" } },
      ["a"],
      Date.now(),
    );
    expect(n).toBe(2);
    expect(got).toEqual([11, 12]);
    expect(emitted).toEqual([["resync", { reason: "too_old", channels: ["a"], epoch: "E2" }]]);
    expect(subs.cursor.value).toEqual({ seq: 20, epoch: "E2" });
    expect(subs.applyPoll({}, ["a"], Date.now())).toBe(0);
  });
});
