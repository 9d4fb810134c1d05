// Regression tests for client bugs found while splitting client.ts into modules.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { FakeWebSocket } from "./fake-ws.js";
import { newClient } from "./helpers.js";

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
});
