import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { StreamOpenError, StreamTransport, type StreamConn, type StreamHost, type StreamOptions } from "../src/stream.js";
import type { HealthReport } from "../src/types.js";
import { FakeWebSocket } from "./fake-ws.js";

const URL = "ws://127.0.0.1:9/v2/realtime/stream";

/** newTransport returns a transport on FakeWebSocket and a host that records every call. */
function newTransport(extra: Partial<StreamOptions> = {}, hooks: Partial<StreamHost> = {}) {
  const calls: Array<[string, ...unknown[]]> = [];
  const report = { rttMs: 1 } as HealthReport;
  const host: StreamHost = {
    traffic: (at) => calls.push(["traffic", at]),
    welcome: (conn, w) => {
      calls.push(["welcome", w.session]);
      hooks.welcome?.(conn, w);
    },
    frame: (_conn, f) => calls.push(["frame", f.type]),
    pong: (sentAt, receivedAt, serverTime) => calls.push(["pong", sentAt, receivedAt, serverTime]),
    error: (err) => calls.push(["error", err.message]),
    closed: (_conn, code, reason) => calls.push(["closed", code, reason]),
    detached: () => calls.push(["detached"]),
    healthReport: () => report,
  };
  const t = new StreamTransport(
    { WebSocket: FakeWebSocket, now: Date.now, connectTimeoutMs: 2000, pingIntervalMs: 0, healthIntervalMs: 0, healthFirstMs: 3000, ...extra },
    host,
  );
  const named = (name: string) => calls.filter((c) => c[0] === name);
  return { t, calls, named };
}

beforeEach(() => {
  vi.useFakeTimers({ now: 1_700_000_000_000 });
  FakeWebSocket.reset();
});
afterEach(() => vi.useRealTimers());

describe("StreamTransport", () => {
  it("opens one socket to the URL and makes it current", () => {
    const { t } = newTransport();
    const conn = t.open(() => URL + "?token=x", false);
    expect(FakeWebSocket.last().url).toBe(URL + "?token=x");
    expect(t.current).toBe(conn);
    expect(conn.openedAt).toBe(Date.now());
    expect(conn.welcome).toBeNull();
  });

  it("wraps what the WebSocket constructor (or the URL) throws in StreamOpenError", () => {
    const Bad = class {
      constructor() {
        throw new SyntaxError("bad url");
      }
    } as any;
    const { t } = newTransport({ WebSocket: Bad });
    expect(() => t.open(() => URL, false)).toThrow(StreamOpenError);
    expect(() =>
      t.open(() => {
        throw new Error("no page");
      }, false),
    ).toThrow(StreamOpenError);
    expect(t.current).toBeNull();
  });

  it("throws a plain Error without any WebSocket implementation", () => {
    const { t } = newTransport({ WebSocket: undefined });
    const saved = (globalThis as any).WebSocket;
    (globalThis as any).WebSocket = undefined;
    try {
      expect(() => t.open(() => URL, false)).toThrow(/no WebSocket implementation/);
    } finally {
      (globalThis as any).WebSocket = saved;
    }
  });

  it("gives up on an attempt without welcome after connectTimeoutMs (as 4000)", () => {
    const { t, calls } = newTransport();
    t.open(() => URL, false);
    const ws = FakeWebSocket.last();
    ws.open();
    vi.advanceTimersByTime(1999);
    expect(calls).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(calls).toEqual([["detached"], ["closed", 4000, "connect timeout"]]);
    expect(ws.closedBy).toEqual({ code: 4000, reason: "connect timeout" });
    expect(t.current).toBeNull();
  });

  it("hands welcome to the host, then pings, then keeps pinging and reporting health", () => {
    const sentInWelcome: unknown[] = [];
    const { t, calls } = newTransport(
      { pingIntervalMs: 1000, healthIntervalMs: 5000 },
      { welcome: () => sentInWelcome.push(t.send({ type: "subscribe", channels: ["a"] })) },
    );
    const conn = t.open(() => URL, false);
    const ws = FakeWebSocket.last();
    ws.welcome({ heartbeatMs: 0 });
    expect(conn.welcome).toMatchObject({ type: "welcome" });
    expect(conn.welcomedAt).toBe(Date.now());
    expect(calls).toEqual([["traffic", Date.now()], ["welcome", "sess-0"]]);
    expect(sentInWelcome).toEqual([true]);
    expect(ws.sent.map((f) => f.type)).toEqual(["subscribe", "ping"]); // the host's frames go first
    vi.advanceTimersByTime(2999);
    expect(ws.sentOfType("health")).toEqual([]);
    vi.advanceTimersByTime(1); // the first report, 3 s after welcome
    expect(ws.sentOfType("health")).toEqual([{ type: "health", health: { rttMs: 1 } }]);
    vi.advanceTimersByTime(2000);
    expect(ws.sentOfType("ping")).toHaveLength(6);
    expect(ws.sentOfType("health")).toHaveLength(2); // then every interval
    // Connect timeout was cleared by welcome.
    vi.advanceTimersByTime(10_000);
    expect(t.current).toBe(conn);
  });

  it("starts no ping or health interval for a connection the host retired in welcome", () => {
    const { t } = newTransport({ pingIntervalMs: 1000, healthIntervalMs: 1000 }, { welcome: () => t.retireCurrent(1000, "closed by app") });
    t.open(() => URL, false);
    const ws = FakeWebSocket.last();
    ws.welcome({ heartbeatMs: 0 });
    expect(ws.sent).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("answers server pings, passes them on, and reports pongs with local times", () => {
    const { t, named } = newTransport();
    t.open(() => URL, false);
    const ws = FakeWebSocket.last();
    ws.welcome({ heartbeatMs: 0 });
    const ping = ws.sentOfType("ping")[0];
    ws.receive({ type: "ping", ts: 7 });
    expect(ws.sentOfType("pong")).toEqual([{ type: "pong", ts: 7 }]);
    vi.advanceTimersByTime(30);
    ws.receive({ type: "pong", ts: ping.ts, serverTime: 123 });
    ws.receive({ type: "pong" }); // no ts: not a measurement
    expect(named("pong")).toEqual([["pong", ping.ts, ping.ts + 30, 123]]);
    expect(named("frame")).toEqual([["frame", "ping"]]);
  });

  it("passes frames after welcome to the host, unknown types included", () => {
    const { t, named } = newTransport();
    t.open(() => URL, false);
    const ws = FakeWebSocket.last();
    ws.welcome();
    ws.receive({ type: "subscribed", op: "subscribe", results: [] });
    ws.events({ id: "e", seq: 1, channel: "a" });
    ws.receive({ type: "presence", channel: "a" });
    expect(named("frame")).toEqual([["frame", "subscribed"], ["frame", "events"], ["frame", "presence"]]);
  });

  it("reports frames that are not JSON or come before welcome, and goes on", () => {
    const { t, named } = newTransport();
    const conn = t.open(() => URL, false);
    const ws = FakeWebSocket.last();
    ws.open();
    ws.onmessage?.({ data: "not json" });
    ws.events({ id: "e", seq: 1, channel: "a" });
    expect(named("error")).toEqual([["error", "frame is not JSON"], ["error", "frame events before welcome"]]);
    expect(named("frame")).toEqual([]);
    expect(t.current).toBe(conn);
  });

  it("treats two heartbeat intervals without a frame as a dead connection (4001)", () => {
    const { t, named } = newTransport();
    t.open(() => URL, false);
    const ws = FakeWebSocket.last();
    ws.welcome({ heartbeatMs: 1000 });
    vi.advanceTimersByTime(1999);
    ws.receive({ type: "ping", ts: 1 }); // life: the timer starts again
    vi.advanceTimersByTime(1999);
    expect(named("closed")).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(named("closed")).toEqual([["closed", 4001, "no frame for two heartbeat intervals"]]);
    expect(ws.closedBy?.code).toBe(4000);
  });

  it("reports the server's close once and ignores a retired socket", () => {
    const { t, calls } = newTransport();
    t.open(() => URL, false);
    const ws = FakeWebSocket.last();
    ws.welcome({ heartbeatMs: 0 });
    calls.length = 0;
    const onmessage = ws.onmessage;
    ws.serverClose(4100, "slow retry=10");
    expect(calls).toEqual([["detached"], ["closed", 4100, "slow retry=10"]]);
    expect(ws.onclose).toBeNull();
    onmessage?.({ data: JSON.stringify({ type: "events", events: [] }) }); // a late event
    expect(calls).toHaveLength(2);
    expect(t.send({ type: "ping" })).toBe(false);
  });

  it("retire closes with a code browsers accept and a short reason, and reports no close", () => {
    const { t, calls } = newTransport();
    t.open(() => URL, false);
    const ws = FakeWebSocket.last();
    ws.welcome();
    t.retireCurrent(1006, "x".repeat(100));
    expect(ws.closedBy).toEqual({ code: 1000, reason: "x".repeat(60) });
    expect(calls.at(-1)).toEqual(["detached"]);
    expect(t.current).toBeNull();
    t.retireCurrent(1000, "again"); // no current: nothing
    expect(calls.at(-1)).toEqual(["detached"]);
  });

  it("sends only on a welcomed, open socket", () => {
    const { t } = newTransport();
    t.open(() => URL, false);
    const ws = FakeWebSocket.last();
    ws.open();
    expect(t.send({ type: "auth", token: "t" })).toBe(false);
    ws.welcome();
    expect(t.send({ type: "auth", token: "t" })).toBe(true);
    ws.readyState = 2;
    expect(t.send({ type: "auth", token: "t" })).toBe(false);
  });

  it("marks a probe as probing until it is welcomed", () => {
    const { t } = newTransport();
    const conn: StreamConn = t.open(() => URL, true);
    expect(conn.probe).toBe(true);
    expect(conn.probing).toBe(true);
    FakeWebSocket.last().welcome();
    expect(conn.probing).toBe(false);
    expect(t.open(() => URL, false).probing).toBe(false);
  });

  it("open retires the connection it replaces", () => {
    const { t, calls } = newTransport();
    t.open(() => URL, true);
    const first = FakeWebSocket.last();
    const second = t.open(() => URL, false);
    expect(first.closedBy).toEqual({ code: 1000, reason: "replaced" });
    expect(first.onclose).toBeNull();
    expect(calls).toEqual([["detached"]]);
    expect(t.current).toBe(second);
  });
});
