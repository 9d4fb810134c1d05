// Shared helpers of the unit tests: a client on a fake WebSocket, network and clock.
import { expect, vi } from "vitest";
import { RealtimeClient, type RealtimeClientOptions } from "../src/client.js";
import type { ConnectionState } from "../src/state.js";
import { FakeNetwork, FakeWebSocket } from "./fake-ws.js";

export const URL = "ws://127.0.0.1:9/v2/realtime/stream";

/** newClient makes a client on FakeWebSocket and a FakeNetwork, recording states and errors. */
export function newClient(extra: Partial<RealtimeClientOptions> = {}) {
  const network = extra.network instanceof FakeNetwork ? extra.network : new FakeNetwork(true);
  const client = new RealtimeClient({
    url: URL,
    WebSocket: FakeWebSocket,
    network,
    random: () => 0.5,
    fetch: (() => Promise.reject(new Error("no fetch in this test"))) as any,
    ...extra,
  });
  const states: ConnectionState[] = [];
  client.on("state", (s) => states.push(s));
  const errors: unknown[] = [];
  client.on("error", (e) => errors.push(e));
  return { client, network, states, errors };
}

/** nextSocket advances the clock just until the client opens its next socket. */
export function nextSocket(): FakeWebSocket {
  const n = FakeWebSocket.instances.length;
  for (let t = 0; t < 400_000 && FakeWebSocket.instances.length === n; t += 50) vi.advanceTimersByTime(50);
  expect(FakeWebSocket.instances.length).toBe(n + 1);
  return FakeWebSocket.last();
}

/** flush runs queued microtasks (subscribe coalescing, promise chains). */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

/**
 * pollServer is a fetch that answers with the given responses in order, then holds every
 * later request (like a long-poll) until it is aborted.
 */
export function pollServer(answers: Array<() => Response | Promise<Response>>) {
  const urls: string[] = [];
  const fetch = vi.fn(async (url: string, init: RequestInit) => {
    urls.push(url);
    const a = answers.shift();
    if (!a) {
      return new Promise<Response>((_, reject) => init.signal?.addEventListener("abort", () => reject(new Error("aborted"))));
    }
    return a();
  });
  return { fetch, urls };
}

/** json answers a poll with body and status. */
export const json =
  (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  () =>
    new Response(JSON.stringify(body), { status, headers });
