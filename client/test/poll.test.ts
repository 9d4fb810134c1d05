import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { pollUrl, PollTransport, retryAfterMs, type PollResult } from "../src/poll.js";
import { ProbeSchedule } from "../src/probe.js";
import { Timer } from "../src/timer.js";
import { defaultStreamUrl, pollBaseUrl, streamUrl, withQuery } from "../src/urls.js";
import { json, pollServer } from "./helpers.js";

const BASE = "http://127.0.0.1:9/v2/realtime/poll";

beforeEach(() => vi.useFakeTimers({ now: 1_700_000_000_000 }));
afterEach(() => vi.useRealTimers());

describe("urls", () => {
  it("puts the token on the stream URL", () => {
    expect(streamUrl("ws://h/v2/realtime/stream", undefined)).toBe("ws://h/v2/realtime/stream");
    expect(streamUrl("ws://h/v2/realtime/stream", "a b")).toBe("ws://h/v2/realtime/stream?token=a%20b");
    expect(streamUrl("ws://h/s?x=1", "t")).toBe("ws://h/s?x=1&token=t");
  });

  it("derives the poll URL from the stream URL unless given", () => {
    expect(pollBaseUrl("wss://h/v2/realtime/stream", undefined)).toBe("https://h/v2/realtime/poll");
    expect(pollBaseUrl("ws://h/v2/realtime/stream?x=1", undefined)).toBe("http://h/v2/realtime/poll?x=1");
    expect(pollBaseUrl("ws://h/v2/realtime/stream", "/custom")).toBe("/custom");
  });

  it("defaults to the page's host, and needs a URL outside a page", () => {
    expect(() => defaultStreamUrl()).toThrow(/options.url is required/);
    vi.stubGlobal("location", { protocol: "https:", host: "example.test:8443" });
    try {
      expect(defaultStreamUrl()).toBe("wss://example.test:8443/v2/realtime/stream");
      expect(pollBaseUrl(undefined, undefined)).toBe("https://example.test:8443/v2/realtime/poll");
    } finally {
      vi.unstubAllGlobals();
    }
  });

  it("withQuery joins parameters with ? or &", () => {
    expect(withQuery("/p", [])).toBe("/p");
    expect(withQuery("/p", ["a=1", "b=2"])).toBe("/p?a=1&b=2");
    expect(withQuery("/p?z=0", ["a=1"])).toBe("/p?z=0&a=1");
  });
});

describe("pollUrl and retryAfterMs", () => {
  it("asks for the channels, the cursor and the token", () => {
    expect(pollUrl({ url: BASE, channels: ["a", "b/c"], cursor: null })).toBe(BASE + "?channels=a,b%2Fc");
    expect(pollUrl({ url: BASE, channels: ["a"], cursor: "10.E1", token: "t k" })).toBe(BASE + "?channels=a&cursor=10.E1&token=t%20k");
  });

  it("takes the body's retryMs, else Retry-After seconds, else 0", () => {
    const res = (h?: string) => new Response("", { status: 503, headers: h ? { "Retry-After": h } : {} });
    expect(retryAfterMs(res("3"), { retryMs: 1500 })).toBe(1500);
    expect(retryAfterMs(res("3"), null)).toBe(3000);
    expect(retryAfterMs(res(" 2 "), { retryMs: 0 })).toBe(2000);
    expect(retryAfterMs(res("Wed, 21 Oct 2015 07:28:00 GMT"), null)).toBe(0);
    expect(retryAfterMs(res(), null)).toBe(0);
  });
});

describe("PollTransport", () => {
  function transport(answers: Array<() => Response | Promise<Response>>, timeoutMs = 65000) {
    const server = pollServer(answers);
    const t = new PollTransport({ fetch: server.fetch as any, now: Date.now, timeoutMs });
    const results: PollResult[] = [];
    const ask = (channels = ["a"]) => t.request({ url: BASE, channels, cursor: "1.E" }, (r) => results.push(r));
    return { t, server, results, ask };
  }

  it("reports an answer with the channels it was for and when it started", async () => {
    const { t, server, results, ask } = transport([json({ events: [], cursor: { seq: 2, epoch: "E" } })]);
    ask(["a", "b"]);
    expect(t.inFlight).toBe(true);
    await vi.advanceTimersByTimeAsync(0);
    expect(server.urls).toEqual([BASE + "?channels=a,b&cursor=1.E"]);
    expect(results).toEqual([{ kind: "answer", body: { events: [], cursor: { seq: 2, epoch: "E" } }, channels: ["a", "b"], started: Date.now() }]);
    expect(t.inFlight).toBe(false);
    expect(server.fetch.mock.calls[0][1]).toMatchObject({ credentials: "same-origin", headers: { Accept: "application/json" } });
  });

  it("reports another status with its retry hint, with or without a JSON body", async () => {
    const { results, ask } = transport([json({ retryMs: 700 }, 429), () => new Response("oops", { status: 500, headers: { "Retry-After": "1" } })]);
    ask();
    await vi.advanceTimersByTimeAsync(0);
    ask();
    await vi.advanceTimersByTimeAsync(0);
    expect(results).toEqual([
      { kind: "refused", status: 429, hintMs: 700 },
      { kind: "refused", status: 500, hintMs: 1000 },
    ]);
  });

  it("reports network errors, bodies that are not JSON and the timeout as failed", async () => {
    const { results, ask } = transport(
      [() => Promise.reject(new TypeError("network")), () => new Response("not json", { status: 200 })],
      5000,
    );
    ask();
    await vi.advanceTimersByTimeAsync(0);
    ask();
    await vi.advanceTimersByTimeAsync(0);
    ask(); // held by the server until the timeout aborts it
    await vi.advanceTimersByTimeAsync(4999);
    expect(results).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(results.map((r) => r.kind)).toEqual(["failed", "failed", "failed"]);
  });

  it("a new request or stop cancels the one in flight: aborted and never reported", async () => {
    const { t, server, results, ask } = transport([]);
    ask(["a"]);
    await vi.advanceTimersByTimeAsync(0);
    const first = server.fetch.mock.calls[0][1].signal as AbortSignal;
    ask(["a", "b"]);
    await vi.advanceTimersByTimeAsync(0);
    expect(first.aborted).toBe(true);
    t.stop();
    await vi.advanceTimersByTimeAsync(0);
    expect((server.fetch.mock.calls[1][1].signal as AbortSignal).aborted).toBe(true);
    expect(results).toEqual([]);
    expect(t.inFlight).toBe(false);
  });

  it("reports a throwing result handler as a failed poll", async () => {
    const server = pollServer([json({ events: [] })]);
    const t = new PollTransport({ fetch: server.fetch as any, now: Date.now, timeoutMs: 1000 });
    const kinds: string[] = [];
    t.request({ url: BASE, channels: ["a"], cursor: null }, (r) => {
      kinds.push(r.kind);
      if (r.kind === "answer") throw new Error("handler bug");
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(kinds).toEqual(["answer", "failed"]);
  });

  it("runs the next poll after a delay; stop cancels it", () => {
    const { t } = transport([]);
    const fn = vi.fn();
    t.after(100, fn);
    t.after(200, fn); // replaces the first
    vi.advanceTimersByTime(150);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(50);
    expect(fn).toHaveBeenCalledOnce();
    t.after(10, fn);
    t.stop();
    vi.advanceTimersByTime(100);
    expect(fn).toHaveBeenCalledOnce();
  });

  it("is available only with a fetch implementation", () => {
    expect(new PollTransport({ fetch: (() => {}) as any, now: Date.now, timeoutMs: 1 }).available).toBe(true);
    vi.stubGlobal("fetch", undefined);
    try {
      expect(new PollTransport({ now: Date.now, timeoutMs: 1 }).available).toBe(false);
    } finally {
      vi.unstubAllGlobals();
    }
  });
});

describe("ProbeSchedule", () => {
  function schedule(intervalMs = 10_000, maxMs = 40_000) {
    const due = vi.fn();
    return { p: new ProbeSchedule({ now: Date.now, intervalMs, maxMs }, due), due };
  }

  it("runs one probe when due; a later schedule replaces it", () => {
    const { p, due } = schedule();
    p.schedule(1000);
    p.schedule(3000);
    expect(p.armed).toBe(true);
    vi.advanceTimersByTime(2999);
    expect(due).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(due).toHaveBeenCalledOnce();
    expect(p.armed).toBe(false);
  });

  it("earliestOnly keeps an earlier probe: a repeated hint cannot postpone it", () => {
    const { p, due } = schedule();
    p.schedule(5000);
    vi.advanceTimersByTime(4000);
    p.schedule(5000, true); // due later than the pending one: kept
    vi.advanceTimersByTime(1000);
    expect(due).toHaveBeenCalledOnce();
    p.schedule(5000);
    p.schedule(1000, true); // earlier: taken
    vi.advanceTimersByTime(1000);
    expect(due).toHaveBeenCalledTimes(2);
  });

  it("clear cancels the probe", () => {
    const { p, due } = schedule();
    p.schedule(10);
    p.clear();
    vi.advanceTimersByTime(100);
    expect(due).not.toHaveBeenCalled();
  });

  it("failed probes double the wait up to maxMs; the server's reasons and a welcome start over", () => {
    const { p } = schedule(10_000, 40_000);
    p.begin("failure");
    expect(p.followsServer).toBe(false);
    expect([p.failed(), p.failed(), p.failed(), p.failed()]).toEqual([20_000, 40_000, 40_000, 40_000]);
    p.refused(); // the server refused a probe (43xx): its advice counts again, failures stay
    expect(p.cause).toBe("server");
    expect(p.failed()).toBe(40_000);
    p.begin("server");
    expect(p.failed()).toBe(20_000);
    p.welcomed();
    expect(p.followsServer).toBe(true);
    expect(p.failed()).toBe(20_000);
    p.begin("failure"); // polling because the stream fails again: failures are kept
    expect(p.failed()).toBe(40_000);
  });

  it("a huge failure count does not overflow", () => {
    const { p } = schedule(10_000, 600_000);
    for (let i = 0; i < 100; i++) p.failed();
    expect(p.failed()).toBe(600_000);
  });
});

describe("Timer", () => {
  it("holds one callback: set replaces, clear cancels, armed until it starts", () => {
    const t = new Timer();
    const fn = vi.fn(() => expect(t.armed).toBe(false));
    t.set(-5, fn); // a negative delay is 0
    t.set(10, fn);
    expect(t.armed).toBe(true);
    vi.advanceTimersByTime(10);
    expect(fn).toHaveBeenCalledOnce();
    t.set(10, fn);
    t.clear();
    t.clear();
    vi.advanceTimersByTime(20);
    expect(fn).toHaveBeenCalledOnce();
  });
});
