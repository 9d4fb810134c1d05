import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { RequestError, type PresenceState } from "../src/index.js";
import { endpointUrl } from "../src/presence.js";
import { FakeWebSocket } from "./fake-ws.js";
import { flush, json, newClient, pollServer } from "./helpers.js";

beforeEach(() => {
  vi.useFakeTimers({ now: 1_700_000_000_000 });
  FakeWebSocket.reset();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("history and presence requests", () => {
  it("go over the open stream and are answered by id", async () => {
    const { client, errors } = newClient();
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome();
    const h = client.history("orders", { limit: 10, before: 99 });
    const req = ws.sentOfType("history")[0];
    expect(req).toMatchObject({ channel: "orders", limit: 10, before: 99 });
    ws.receive({ type: "history", id: "other", channel: "x", events: [], more: false, epoch: "E1", source: "memory" });
    ws.receive({
      type: "history",
      id: req.id,
      channel: "orders",
      events: [{ id: "a", seq: 5, channel: "orders", ts: 1 }],
      more: true,
      epoch: "E1",
      source: "bus",
    });
    const got = await h;
    expect(got.events.map((e) => e.id)).toEqual(["a"]);
    expect(got.more).toBe(true);

    const p = client.presence("room", { limit: 5 });
    const preq = ws.sentOfType("presence")[0];
    expect(preq).toMatchObject({ channel: "room", limit: 5 });
    ws.receive({ type: "error", id: preq.id, code: "forbidden", message: "not yours" });
    await expect(p).rejects.toMatchObject({ code: "forbidden" });
    await expect(p).rejects.toBeInstanceOf(RequestError);
    expect(errors).toEqual([]); // an answered request is not a client error
  });

  it("go over HTTP without a stream, and when the stream ends before the answer", async () => {
    const srv = pollServer([
      json({ channel: "orders", events: [], more: false, epoch: "E1", source: "memory" }),
      json({ channel: "room", members: [{ user: "u1", conns: 1 }], users: 1, conns: 1 }),
      json({ error: "not yours", code: "forbidden" }, 403),
    ]);
    const { client } = newClient({ fetch: srv.fetch as any, token: "t k" });
    await client.history("orders", { after: 7 });
    expect(srv.urls[0]).toBe("http://127.0.0.1:9/v2/realtime/history?channel=orders&after=7&token=t%20k");
    // Like a poll: no cookie on a cross-origin request (the token is in the URL), no preflight.
    expect(srv.fetch.mock.calls[0][1]).toMatchObject({ credentials: "same-origin" });
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome();
    const p = client.presence("room");
    expect(ws.sentOfType("presence")).toHaveLength(1);
    ws.serverClose(1006);
    expect((await p).users).toBe(1);
    expect(srv.urls[1]).toContain("/v2/realtime/presence?channel=room");
    await expect(client.history("secret")).rejects.toMatchObject({ code: "forbidden", status: 403 });
    client.close();
  });

  it("time out", async () => {
    const { client } = newClient();
    client.connect();
    FakeWebSocket.last().welcome();
    const h = client.history("orders", { timeoutMs: 500 });
    vi.advanceTimersByTime(600);
    await expect(h).rejects.toMatchObject({ code: "timeout" });
  });

  it("derive their URL from the stream URL", () => {
    expect(endpointUrl("wss://h/x/v2/realtime/stream?token=a", "history", ["channel=c"])).toBe("https://h/x/v2/realtime/history?channel=c");
  });
});

describe("watchPresence", () => {
  it("subscribes with presence, applies the snapshot, then the diffs after it; again after a reconnect", async () => {
    const { client } = newClient();
    const states: PresenceState[] = [];
    const stop = client.watchPresence("room", (s) => states.push(s));
    client.connect();
    let ws = FakeWebSocket.last();
    ws.welcome();
    await flush();
    const subs = ws.sentOfType("subscribe");
    expect(subs).toHaveLength(2);
    expect(subs[0].presence).toBeUndefined(); // the first subscribe carries the cursor for every channel
    expect(subs[0].cursor).toBeDefined();
    expect(subs[1]).toMatchObject({ channels: ["room"], presence: true });
    const req = ws.sentOfType("presence")[0];
    expect(req.channel).toBe("room");
    // A diff before the snapshot is in it already: ignored.
    ws.receive({ type: "presence_diff", channel: "room", joins: ["early"] });
    ws.receive({ type: "presence", id: req.id, channel: "room", members: [{ user: "early", conns: 1 }, { user: "me", conns: 1 }], users: 2, conns: 2 });
    await flush();
    expect(states).toHaveLength(1);
    expect([...states[0].members.keys()]).toEqual(["early", "me"]);
    ws.receive({ type: "presence_diff", channel: "room", joins: ["bob"], leaves: ["early"] });
    expect([...states.at(-1)!.members.keys()].sort()).toEqual(["bob", "me"]);
    expect(states.at(-1)!.users).toBe(2);

    // Reconnect: subscribed again with presence, a fresh snapshot replaces the list.
    ws.serverClose(1006);
    vi.advanceTimersByTime(1000);
    ws = FakeWebSocket.last();
    ws.welcome();
    await flush();
    expect(ws.sentOfType("subscribe").at(-1)).toMatchObject({ channels: ["room"], presence: true });
    ws.receive({ type: "presence_diff", channel: "room", joins: ["stale"] }); // before the snapshot
    const req2 = ws.sentOfType("presence")[0];
    ws.receive({ type: "presence", id: req2.id, channel: "room", members: [{ user: "me", conns: 1 }], users: 1, conns: 1 });
    await flush();
    expect([...states.at(-1)!.members.keys()]).toEqual(["me"]);
    stop();
    await flush();
    expect(ws.sentOfType("unsubscribe").at(-1)).toMatchObject({ channels: ["room"] });
    client.close();
  });

  it("fetches snapshots while long-polling", async () => {
    // Polls wait (a long-poll); presence snapshots answer at once.
    const urls: string[] = [];
    let n = 0;
    const srv = {
      urls,
      fetch: vi.fn(async (url: string, init: RequestInit) => {
        urls.push(url);
        if (url.includes("/presence")) {
          n++;
          return new Response(JSON.stringify({ channel: "room", members: [{ user: "u" + n, conns: 1 }], users: 1, conns: 1 }));
        }
        return new Promise<Response>((_, reject) => init.signal?.addEventListener("abort", () => reject(new Error("aborted"))));
      }),
    };
    const { client } = newClient({ fetch: srv.fetch as any, presencePollMs: 1000 });
    const states: PresenceState[] = [];
    client.watchPresence("room", (s) => states.push(s));
    client.connect();
    FakeWebSocket.last().welcome();
    FakeWebSocket.last().receive({ type: "transport", transport: "poll", retryMs: 60000 });
    await flush();
    for (let i = 0; i < 25; i++) await vi.advanceTimersByTimeAsync(100);
    for (let i = 0; i < 10 && states.length < 2; i++) await new Promise<void>((r) => queueMicrotask(r));
    const presenceUrls = srv.urls.filter((u) => u.includes("/presence"));
    expect(presenceUrls.length).toBeGreaterThanOrEqual(2);
    expect(states.length).toBeGreaterThanOrEqual(2);
    expect([...states.at(-1)!.members.keys()]).toEqual(["u" + n]);
    client.close();
  });
});
