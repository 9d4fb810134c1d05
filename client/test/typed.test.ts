import { afterEach, beforeEach, describe, expect, expectTypeOf, it, vi } from "vitest";
import { useChannel } from "../src/react.js";
import { typedChannel, type TypedChannel, type TypedEvent } from "../src/typed.js";
import type { RealtimeEvent } from "../src/types.js";
import { FakeWebSocket } from "./fake-ws.js";
import { flush, newClient } from "./helpers.js";

interface OrderEvent {
  id: string;
  status: "created" | "shipped";
}
// What the generator writes for "orders.{id}" and "user:{uid}:inbox.{box}".
const orders = (id: string): TypedChannel<OrderEvent> => typedChannel<OrderEvent>("orders.{id}", [id]);
const inbox = (uid: string, box: string) => typedChannel<{ text: string }>("user:{uid}:inbox.{box}", [uid, box]);

beforeEach(() => {
  vi.useFakeTimers({ now: 1_700_000_000_000 });
  FakeWebSocket.reset();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("typedChannel", () => {
  it("fills the parameters in order; the channel is the plain name at run time", () => {
    expect(orders("42")).toBe("orders.42");
    expect(inbox("7", "main")).toBe("user:7:inbox.main");
    expect(typedChannel("public.news", [])).toBe("public.news");
    expect(orders("a_b-c@d=e")).toBe("orders.a_b-c@d=e");
  });

  it("refuses what the Go side refuses", () => {
    for (const bad of ["", "4.2", "a b", "*", "x".repeat(130)]) expect(() => orders(bad)).toThrow(TypeError);
    expect(() => inbox("7:admin", "main")).toThrow(/uid/); // a colon would forge the user part
    expect(() => typedChannel("orders.{id}", [])).toThrow(/no value/);
    expect(() => typedChannel("orders.{id}", ["1", "2"])).toThrow(/2 values for 1/);
  });
});

describe("typed subscribe", () => {
  it("delivers the channel's events to a handler typed with its payload", async () => {
    const { client } = newClient();
    client.connect();
    const ws = FakeWebSocket.last();
    ws.welcome();
    const got: string[] = [];
    client.subscribe(orders("42"), (ev) => {
      expectTypeOf(ev).toEqualTypeOf<TypedEvent<OrderEvent>>();
      expectTypeOf(ev.data.status).toEqualTypeOf<"created" | "shipped">();
      got.push(`${ev.data.id}:${ev.data.status}`);
    });
    await flush();
    expect(ws.sentOfType("subscribe")[0].channels).toEqual(["orders.42"]);
    ws.events({ id: "e1", seq: 1, channel: "orders.42", data: { id: "42", status: "shipped" } });
    expect(got).toEqual(["42:shipped"]);
  });

  it("keeps plain string channels untyped", () => {
    const { client } = newClient();
    client.subscribe("orders.42", (ev) => {
      expectTypeOf(ev).toEqualTypeOf<RealtimeEvent<unknown>>();
    });
    client.subscribe<OrderEvent>("orders.42", (ev) => {
      expectTypeOf(ev.data).toEqualTypeOf<OrderEvent | undefined>();
    });
    // @ts-expect-error a plain string is not a typed channel
    const ch: TypedChannel<OrderEvent> = "orders.42";
    void ch;
    // @ts-expect-error the handler must take the channel's payload type
    client.subscribe(orders("1"), (ev: TypedEvent<{ other: number }>) => void ev);
  });
});

describe("typed useChannel", () => {
  it("hands the handler the channel's payload type; strings and null still work", () => {
    expectTypeOf(useChannel).toBeCallableWith("orders.1", (ev: RealtimeEvent<unknown>) => void ev);
    expectTypeOf(useChannel).toBeCallableWith(null, () => {});
    // Inference, as a component writes it (type-checked only: hooks need a component).
    const inComponent = (id: string) =>
      useChannel(orders(id), (ev) => {
        expectTypeOf(ev.data).toEqualTypeOf<OrderEvent>();
      });
    void inComponent;
  });
});
