// Regression tests for client bugs found while splitting client.ts into modules.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeWebSocket } from "./fake-ws.js";
import { flush, json, newClient, pollServer, URL } from "./helpers.js";

beforeEach(() => {
  vi.useFakeTimers({ now: 1_700_000_000_000 });
  FakeWebSocket.reset();
});
afterEach(() => vi.useRealTimers());

describe("fixed bugs", () => {
  it("closing the client from a welcome listener leaves no ping or health interval running", () => {
    const { client } = newClient({ pingIntervalMs: 1000, healthIntervalMs: 5000 });
    client.on("welcome", () => client.close());
    client.connect();
    FakeWebSocket.last().welcome({ heartbeatMs: 0 });
    expect(client.state).toBe("closed");
    expect(vi.getTimerCount()).toBe(0);
  });

  it("a probe due while a poll's token refresh is pending waits for the refresh", async () => {
    let resolve!: (t: string) => void;
    const refreshToken = vi.fn(() => new Promise<string>((r) => (resolve = r)));
    const server = pollServer([json({}, 401)]);
    const { client } = newClient({ fetch: server.fetch as any, refreshToken, probeIntervalMs: 1000, token: "old" });
    client.subscribe("a", () => {});
    client.connect();
    FakeWebSocket.last().welcome();
    await flush();
    FakeWebSocket.last().serverClose(4300); // poll; the probe is due in 1 s
    await vi.advanceTimersByTimeAsync(0);
    expect(client.state).toBe("reconnecting"); // 401: refreshing the token
    expect(refreshToken).toHaveBeenCalledOnce();
    await vi.advanceTimersByTimeAsync(5000);
    expect(FakeWebSocket.instances).toHaveLength(1); // no probe with the expired token
    resolve("fresh");
    await vi.advanceTimersByTimeAsync(0);
    expect(client.state).toBe("polling");
    expect(server.urls.at(-1)).toContain("token=fresh");
    await vi.advanceTimersByTimeAsync(1000); // probing resumes, with the new token
    expect(FakeWebSocket.last().url).toBe(URL + "?token=fresh");
  });

  it("going back to the stream (no poll endpoint) retires a probe in flight instead of leaking it", async () => {
    const server = pollServer([json({}, 404)]);
    const { client } = newClient({ fetch: server.fetch as any, probeIntervalMs: 1000 });
    client.subscribe("a", () => {});
    client.connect();
    FakeWebSocket.last().welcome();
    await flush();
    FakeWebSocket.last().serverClose(4300, "retry=1000"); // polling; the first poll is held below
    server.fetch.mockImplementationOnce(
      (_url: string, init: RequestInit) => new Promise<Response>((_, reject) => init.signal?.addEventListener("abort", () => reject(new Error("aborted")))),
    );
    await vi.advanceTimersByTimeAsync(1000); // the probe opens
    const probe = FakeWebSocket.last();
    expect(FakeWebSocket.instances).toHaveLength(2);
    client.subscribe("b", () => {}); // restarts polling while the probe connects: answered 404
    await vi.advanceTimersByTimeAsync(0);
    expect(client.transport).toBe("stream");
    expect(client.state).toBe("reconnecting");
    expect(probe.closedBy).not.toBeNull();
    probe.welcome(); // a late welcome of the retired probe changes nothing
    expect(client.state).toBe("reconnecting");
    await vi.advanceTimersByTimeAsync(1000);
    expect(FakeWebSocket.instances).toHaveLength(3);
    expect(client.state).toBe("connecting");
  });
});
