import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  EVENT_TARGET,
  IllegalTransitionError,
  nextState,
  STATE_EVENTS,
  StateMachine,
  STATES,
  TRANSITIONS,
  type ConnectionState,
  type StateEvent,
} from "../src/state.js";
import type { RealtimeClient } from "../src/client.js";
import { FakeNetwork, FakeWebSocket } from "./fake-ws.js";
import { flush, json, newClient, pollServer } from "./helpers.js";

// The legal transitions, written out independently of src/state.ts: a change to the
// table must change this list (and docs/client.md) too.
const LEGAL: Array<[ConnectionState, StateEvent, ConnectionState]> = [
  ["idle", "connect", "connecting"],
  ["idle", "offline", "offline"],
  ["idle", "stop", "closed"],
  ["connecting", "connect", "connecting"],
  ["connecting", "welcome", "open"],
  ["connecting", "retry", "reconnecting"],
  ["connecting", "poll", "polling"],
  ["connecting", "offline", "offline"],
  ["connecting", "stop", "closed"],
  ["open", "connect", "connecting"],
  ["open", "retry", "reconnecting"],
  ["open", "poll", "polling"],
  ["open", "offline", "offline"],
  ["open", "stop", "closed"],
  ["reconnecting", "connect", "connecting"],
  ["reconnecting", "retry", "reconnecting"],
  ["reconnecting", "poll", "polling"],
  ["reconnecting", "offline", "offline"],
  ["reconnecting", "stop", "closed"],
  ["polling", "welcome", "open"],
  ["polling", "retry", "reconnecting"],
  ["polling", "poll", "polling"],
  ["polling", "offline", "offline"],
  ["polling", "stop", "closed"],
  ["offline", "connect", "connecting"],
  ["offline", "poll", "polling"],
  ["offline", "offline", "offline"],
  ["offline", "stop", "closed"],
  ["closed", "connect", "connecting"],
  ["closed", "poll", "polling"],
  ["closed", "offline", "offline"],
  ["closed", "stop", "closed"],
];

const legal = new Set(LEGAL.map(([s, e]) => `${s} ${e}`));
const ALL_PAIRS = STATES.flatMap((s) => STATE_EVENTS.map((e) => [s, e] as const));

/** machineIn returns a strict machine in state s (set through its private field). */
function machineIn(s: ConnectionState, strict = true, onIllegal?: (e: IllegalTransitionError) => void): StateMachine {
  const m = new StateMachine(strict, onIllegal);
  (m as any).current = s;
  return m;
}

describe("transition table", () => {
  it("has a row for every state and only known events", () => {
    expect(Object.keys(TRANSITIONS).sort()).toEqual([...STATES].sort());
    for (const s of STATES) for (const e of Object.keys(TRANSITIONS[s])) expect(STATE_EVENTS).toContain(e);
  });

  it("lists exactly the legal transitions", () => {
    const table = ALL_PAIRS.filter(([s, e]) => nextState(s, e) !== undefined).map(([s, e]) => [s, e, nextState(s, e)]);
    expect(table).toEqual(LEGAL);
  });

  it("leads each event to one state, whatever the state it leaves", () => {
    for (const [, e, to] of LEGAL) expect(EVENT_TARGET[e]).toBe(to);
  });

  it("leaves idle for good and can reach every state", () => {
    expect(LEGAL.some(([, , to]) => to === "idle")).toBe(false);
    for (const s of STATES.filter((s) => s !== "idle")) expect(LEGAL.some(([, , to]) => to === s), s).toBe(true);
  });

  for (const [from, ev, to] of LEGAL) {
    it(`${from} x ${ev} -> ${to}`, () => {
      const m = machineIn(from);
      expect(m.fire(ev)).toBe(from);
      expect(m.state).toBe(to);
    });
  }

  for (const [from, ev] of ALL_PAIRS.filter(([s, e]) => !legal.has(`${s} ${e}`))) {
    it(`${from} x ${ev} is refused`, () => {
      const m = machineIn(from);
      expect(() => m.fire(ev)).toThrow(IllegalTransitionError);
      expect(() => m.fire(ev)).toThrow(`illegal transition: ${ev} in state ${from}`);
      expect(m.state).toBe(from);
    });
  }

  it("in production, an illegal transition is reported and the machine moves to the event's target", () => {
    const seen: IllegalTransitionError[] = [];
    const m = machineIn("idle", false, (e) => seen.push(e));
    expect(m.fire("welcome")).toBe("idle");
    expect(m.state).toBe("open");
    expect(seen).toHaveLength(1);
    expect(seen[0]).toMatchObject({ state: "idle", event: "welcome" });
  });

  it("is the table docs/client.md shows", () => {
    const doc = readFileSync(fileURLToPath(new URL("../../docs/client.md", import.meta.url)), "utf8");
    const lines = doc.split("\n");
    const head = lines.findIndex((l) => l.startsWith("| from \\ event |"));
    expect(head).toBeGreaterThan(0);
    const events = lines[head].split("|").slice(2, -1).map((c) => c.trim());
    expect(events).toEqual(STATE_EVENTS);
    const rows = lines.slice(head + 2, head + 2 + STATES.length);
    const documented = rows.flatMap((row) => {
      const cells = row.split("|").slice(1, -1).map((c) => c.trim());
      const from = cells[0].replace(/`/g, "") as ConnectionState;
      return cells.slice(1).flatMap((to, i) => (to ? [[from, events[i], to]] : []));
    });
    expect(documented).toEqual(LEGAL);
  });

  it("is strict by default outside production (vitest sets NODE_ENV=test)", () => {
    expect(() => new StateMachine().fire("welcome")).toThrow(IllegalTransitionError);
  });
});

// Each legal transition, reached by driving a real client: the table has no dead entries.
describe("the client takes every legal transition", () => {
  let fired: Array<[ConnectionState, StateEvent]>;
  beforeEach(() => {
    vi.useFakeTimers({ now: 1_700_000_000_000 });
    FakeWebSocket.reset();
    fired = [];
    const orig = StateMachine.prototype.fire;
    vi.spyOn(StateMachine.prototype, "fire").mockImplementation(function (this: StateMachine, ev: StateEvent) {
      fired.push([this.state, ev]);
      return orig.call(this, ev);
    });
  });
  afterEach(() => {
    vi.restoreAllMocks();
    vi.useRealTimers();
  });

  /** polling returns a client that polls (close 4300) with a poll server holding requests. */
  async function polling(answers: Array<() => Response> = [], extra = {}) {
    const server = pollServer(answers);
    const t = newClient({ fetch: server.fetch as any, ...extra });
    t.client.subscribe("a", () => {});
    t.client.connect();
    FakeWebSocket.last().welcome();
    await flush();
    FakeWebSocket.last().serverClose(4300);
    expect(t.client.state).toBe("polling");
    return { ...t, server };
  }
  /** badUrlAfter is a WebSocket constructor that throws from the n-th socket on. */
  function badUrlAfter(n: number) {
    return class extends FakeWebSocket {
      constructor(url: string) {
        if (FakeWebSocket.instances.length >= n) throw new SyntaxError("bad url");
        super(url);
      }
    };
  }

  const scenarios: Record<string, () => Promise<RealtimeClient> | RealtimeClient> = {
    "idle connect": () => {
      const { client } = newClient();
      client.connect();
      return client;
    },
    "idle offline": () => {
      const { client } = newClient({ network: new FakeNetwork(false) });
      client.connect();
      return client;
    },
    "idle stop": () => {
      const { client } = newClient({ WebSocket: badUrlAfter(0) });
      client.connect();
      return client;
    },
    "connecting connect": () => {
      const { client } = newClient();
      client.connect();
      client.reconnect();
      return client;
    },
    "connecting welcome": () => {
      const { client } = newClient();
      client.connect();
      FakeWebSocket.last().welcome();
      return client;
    },
    "connecting retry": () => {
      const { client } = newClient();
      client.connect();
      FakeWebSocket.last().serverClose(1006);
      return client;
    },
    "connecting poll": () => {
      const { client } = newClient();
      client.connect();
      FakeWebSocket.last().serverClose(4300);
      return client;
    },
    "connecting offline": () => {
      const { client, network } = newClient();
      client.connect();
      network.set(false);
      return client;
    },
    "connecting stop": () => {
      const { client } = newClient();
      client.connect();
      client.close();
      return client;
    },
    "open connect": () => {
      const { client } = newClient();
      client.connect();
      FakeWebSocket.last().welcome();
      client.reconnect();
      return client;
    },
    "open retry": () => {
      const { client } = newClient();
      client.connect();
      FakeWebSocket.last().welcome();
      FakeWebSocket.last().serverClose(1001);
      return client;
    },
    "open poll": () => {
      const { client } = newClient();
      client.connect();
      FakeWebSocket.last().welcome();
      FakeWebSocket.last().receive({ type: "transport", transport: "poll", retryMs: 1000 });
      return client;
    },
    "open offline": () => {
      const { client, network } = newClient();
      client.connect();
      FakeWebSocket.last().welcome();
      network.set(false);
      return client;
    },
    "open stop": () => {
      const { client } = newClient();
      client.connect();
      FakeWebSocket.last().welcome();
      FakeWebSocket.last().serverClose(4403);
      return client;
    },
    "reconnecting connect": () => {
      const { client } = newClient();
      client.connect();
      FakeWebSocket.last().serverClose(1006);
      vi.advanceTimersByTime(1000);
      return client;
    },
    "reconnecting retry": async () => {
      let n = 0;
      const { client } = newClient({
        refreshToken: async () => {
          if (++n === 1) throw new Error("down");
          return "t";
        },
      });
      client.connect();
      FakeWebSocket.last().serverClose(4200);
      await flush();
      vi.advanceTimersByTime(500); // the refresh is retried
      return client;
    },
    "reconnecting poll": async () => {
      const { client } = await polling([json({}, 401)], { refreshToken: async () => "fresh" });
      await vi.advanceTimersByTimeAsync(0);
      return client;
    },
    "reconnecting offline": () => {
      const { client, network } = newClient();
      client.connect();
      FakeWebSocket.last().serverClose(1006);
      network.set(false);
      return client;
    },
    "reconnecting stop": () => {
      const { client } = newClient();
      client.connect();
      FakeWebSocket.last().serverClose(1006);
      client.close();
      return client;
    },
    "polling welcome": async () => {
      const { client } = await polling([], { probeIntervalMs: 1000 });
      await vi.advanceTimersByTimeAsync(1000);
      FakeWebSocket.last().welcome();
      return client;
    },
    "polling retry": async () => {
      const { client } = await polling([json({}, 404)]);
      await vi.advanceTimersByTimeAsync(0);
      return client;
    },
    "polling poll": async () => {
      const { client } = await polling([], { probeIntervalMs: 1000 });
      await vi.advanceTimersByTimeAsync(1000);
      FakeWebSocket.last().serverClose(1006); // the probe failed: keep polling
      return client;
    },
    "polling offline": async () => {
      const { client, network } = await polling();
      network.set(false);
      return client;
    },
    "polling stop": async () => {
      const { client } = await polling();
      client.close();
      return client;
    },
    "offline connect": () => {
      const { client, network } = newClient();
      client.connect();
      network.set(false);
      network.set(true);
      return client;
    },
    "offline poll": async () => {
      const { client, network } = await polling();
      network.set(false);
      network.set(true);
      return client;
    },
    "offline offline": () => {
      const network = new FakeNetwork(false);
      const { client } = newClient({ network });
      client.connect();
      // An "online" event that navigator.onLine does not confirm yet.
      for (const fn of [...(network as any).fns]) fn(true);
      return client;
    },
    "offline stop": () => {
      const { client, network } = newClient();
      client.connect();
      network.set(false);
      client.close();
      return client;
    },
    "closed connect": () => {
      const { client } = newClient();
      client.connect();
      client.close();
      client.connect();
      return client;
    },
    "closed poll": async () => {
      const { client } = await polling();
      client.close();
      client.connect();
      return client;
    },
    "closed offline": () => {
      const { client, network } = newClient();
      client.connect();
      client.close();
      network.set(false);
      client.connect();
      return client;
    },
    "closed stop": () => {
      const { client } = newClient({ WebSocket: badUrlAfter(1) });
      client.connect();
      client.close();
      client.connect();
      return client;
    },
  };

  it("has a scenario for every legal transition", () => {
    expect(Object.keys(scenarios).sort()).toEqual([...legal].sort());
  });

  for (const [from, ev, to] of LEGAL) {
    it(`${from} x ${ev} -> ${to}`, async () => {
      const client = await scenarios[`${from} ${ev}`]();
      expect(fired).toContainEqual([from, ev]);
      const i = fired.findIndex(([s, e]) => s === from && e === ev);
      // The state right after that event (the next fire starts from it, if any).
      const after = i + 1 < fired.length ? fired[i + 1][0] : client.state;
      expect(after).toBe(to);
    });
  }
});
