import { describe, expect, it } from "vitest";
import { CursorTracker } from "../src/cursor.js";
import type { WelcomeFrame } from "../src/types.js";

const welcome = (seq: number, epoch: string) => ({ type: "welcome", seq, epoch }) as WelcomeFrame;

function at(seq: number, epoch: string): CursorTracker {
  const c = new CursorTracker();
  c.observe(seq, epoch);
  return c;
}

describe("CursorTracker", () => {
  it("has no position at first", () => {
    const c = new CursorTracker();
    expect(c.value).toBeNull();
    expect(c.has).toBe(false);
    expect(c.query()).toBeNull();
  });

  it("starts at the first event only when the epoch is known, then only moves forward", () => {
    const c = new CursorTracker();
    c.observe(5, null); // polled or probing: no epoch, no position
    expect(c.value).toBeNull();
    c.observe(7, "E");
    expect(c.value).toEqual({ seq: 7, epoch: "E" });
    c.observe(6, "E"); // a replayed or duplicate event
    c.observe(9, null); // later events need no epoch
    expect(c.value).toEqual({ seq: 9, epoch: "E" });
  });

  it("hands out copies", () => {
    const c = at(1, "E");
    c.value!.seq = 100;
    expect(c.value).toEqual({ seq: 1, epoch: "E" });
  });

  it("baseline starts at the welcome's head", () => {
    const c = new CursorTracker();
    expect(c.baseline(welcome(40, "E9"))).toEqual({ seq: 40, epoch: "E9" });
    expect(c.value).toEqual({ seq: 40, epoch: "E9" });
    expect(new CursorTracker().baseline({ type: "welcome" } as WelcomeFrame)).toEqual({ seq: 0, epoch: "" });
  });

  const cases: Array<[string, [number, string] | null, string, string, number, { seq: number; epoch: string }]> = [
    // name, cursor before, reason, answer epoch, head seq, cursor after
    ["epoch_mismatch restarts at the head of the new epoch", [10, "OLD"], "epoch_mismatch", "NEW", 7, { seq: 7, epoch: "NEW" }],
    ["cursor_ahead restarts at the head", [50, "E"], "cursor_ahead", "E", 20, { seq: 20, epoch: "E" }],
    ["too_old in the same epoch keeps the higher seq", [10, "E"], "too_old", "E", 7, { seq: 10, epoch: "E" }],
    ["too_old moves up to the head", [3, "E"], "too_old", "E", 7, { seq: 7, epoch: "E" }],
    ["another epoch restarts whatever the reason", [10, "A"], "unavailable", "B", 2, { seq: 2, epoch: "B" }],
    ["no epoch in the answer keeps the old one", [10, "A"], "unavailable", "", 12, { seq: 12, epoch: "A" }],
    ["no cursor before takes the head", null, "too_old", "E", 4, { seq: 4, epoch: "E" }],
  ];
  for (const [name, before, reason, epoch, head, after] of cases) {
    it(`notRecovered: ${name}`, () => {
      const c = before ? at(...before) : new CursorTracker();
      expect(c.notRecovered({ recovered: false, reason }, epoch, head)).toBe(after.epoch);
      expect(c.value).toEqual(after);
    });
  }

  it("fromPoll takes a later cursor or one of another epoch, never an earlier one", () => {
    const c = new CursorTracker();
    c.fromPoll({ seq: 3, epoch: "E" });
    expect(c.value).toEqual({ seq: 3, epoch: "E" });
    c.fromPoll({ seq: 2, epoch: "E" });
    expect(c.value).toEqual({ seq: 3, epoch: "E" });
    c.fromPoll({ seq: 1, epoch: "F" });
    expect(c.value).toEqual({ seq: 1, epoch: "F" });
    c.fromPoll(undefined);
    c.fromPoll({ seq: "9" as any, epoch: "F" });
    expect(c.value).toEqual({ seq: 1, epoch: "F" });
  });

  it("fromPing moves forward in the cursor's epoch only, or starts at the connection's epoch", () => {
    const c = at(10, "E");
    expect(c.fromPing(5, "E", "E")).toBe(false); // never backwards
    expect(c.fromPing(20, "F", "F")).toBe(false); // another epoch than the cursor's
    expect(c.fromPing(undefined, undefined, "E")).toBe(false); // a ping of an older server
    expect(c.fromPing("30", "E", "E")).toBe(false);
    expect(c.fromPing(30, "", "E")).toBe(false);
    expect(c.value).toEqual({ seq: 10, epoch: "E" });
    expect(c.fromPing(30, "E", "other")).toBe(true);
    expect(c.value).toEqual({ seq: 30, epoch: "E" });
    const fresh = new CursorTracker();
    expect(fresh.fromPing(7, "X", "E")).toBe(false); // not this connection's epoch
    expect(fresh.has).toBe(false);
    expect(fresh.fromPing(7, "E", "E")).toBe(true);
    expect(fresh.value).toEqual({ seq: 7, epoch: "E" });
  });

  it("query is <seq>.<epoch> with the epoch escaped", () => {
    expect(at(12, "a b/c").query()).toBe("12.a%20b%2Fc");
  });
});
