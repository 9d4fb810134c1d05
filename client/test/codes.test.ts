import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { actionFor, CLOSE_ACTIONS, CloseCode, DEFAULT_CLOSE_ACTION, httpAction, retryHint } from "../src/codes.js";

describe("actionFor mirrors protocol.ActionFor", () => {
  const cases: Array<[number, string]> = [
    [1000, "stop"],
    [1001, "backoff"],
    [1002, "stop"],
    [1003, "stop"],
    [1006, "backoff"],
    [1007, "stop"],
    [1008, "stop"],
    [1009, "stop"],
    [1011, "backoff"],
    [1012, "backoff"],
    [1013, "backoff"],
    [3000, "backoff"], // unknown: reconnect with backoff
    [4000, "backoff"],
    [4001, "backoff"],
    [4099, "backoff"],
    [4100, "retry-after"],
    [4101, "retry-after"],
    [4102, "retry-after"],
    [4103, "retry-after"],
    [4104, "retry-after"],
    [4105, "retry-after"],
    [4199, "retry-after"],
    [4200, "refresh-token"],
    [4299, "refresh-token"],
    [4300, "use-poll"],
    [4399, "use-poll"],
    [4400, "stop"],
    [4401, "stop"],
    [4403, "stop"],
    [4499, "stop"],
    [4999, "stop"],
    [5000, "backoff"],
  ];
  for (const [code, want] of cases) {
    it(`${code} -> ${want}`, () => expect(actionFor(code)).toBe(want));
  }

  it("names the same codes as close.go", () => {
    expect(CloseCode).toEqual({
      Normal: 1000,
      GoingAway: 1001,
      Abnormal: 1006,
      BadData: 1007,
      TooBig: 1009,
      Internal: 1011,
      Reconnect: 4000,
      Heartbeat: 4001,
      Slow: 4100,
      Shutdown: 4101,
      RateLimited: 4102,
      Overloaded: 4103,
      TooMany: 4104,
      QueueBudget: 4105,
      TokenExpired: 4200,
      UsePoll: 4300,
      BadRequest: 4400,
      Unauthorized: 4401,
      Forbidden: 4403,
    });
  });
});

describe("retryHint mirrors protocol.RetryHint", () => {
  const cases: Array<[string | undefined, number]> = [
    ["slow consumer retry=1500", 1500],
    ["retry=0", 0],
    ["retry=250 draining", 250],
    ["a retry=1 b retry=2", 2], // the last one wins
    ["retry=", 0],
    ["retry=-5", 0],
    ["retry=12ms", 0],
    ["retry=1e3", 0],
    ["no hint", 0],
    ["", 0],
    [undefined, 0],
    ["retry=99999999999999999999", 0], // not a safe integer
  ];
  for (const [reason, want] of cases) {
    it(JSON.stringify(reason ?? null), () => expect(retryHint(reason)).toBe(want));
  }
});

describe("httpAction", () => {
  const cases: Array<[number, string]> = [
    [400, "stop"],
    [401, "refresh-token"],
    [403, "stop"],
    [404, "unsupported"],
    [405, "unsupported"],
    [413, "stop"],
    [429, "retry-after"],
    [500, "backoff"],
    [501, "unsupported"],
    [502, "backoff"],
    [503, "retry-after"],
  ];
  for (const [status, want] of cases) {
    it(`${status} -> ${want}`, () => expect(httpAction(status)).toBe(want));
  }
});

describe("mirror of realtime/protocol/close.go and docs/protocol.md", () => {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  it("has every close code of close.go, with the same value", () => {
    const src = readFileSync(root + "realtime/protocol/close.go", "utf8");
    const goCodes = [...src.matchAll(/^\s*Close\w+\s+CloseCode\s*=\s*(\d+)/gm)].map((m) => Number(m[1]));
    expect(goCodes.length).toBeGreaterThan(10);
    expect([...goCodes].sort()).toEqual(Object.values(CloseCode).sort());
  });

  it("names each code of close.go after its Go name (two names kept from the first mirror)", () => {
    const src = readFileSync(root + "realtime/protocol/close.go", "utf8");
    const kept: Record<string, string> = { TokenExpire: "TokenExpired", Unauthorize: "Unauthorized" };
    const goNames = Object.fromEntries(
      [...src.matchAll(/^\s*Close(\w+)\s+CloseCode\s*=\s*(\d+)/gm)].map((m) => [kept[m[1]] ?? m[1], Number(m[2])]),
    );
    expect(CloseCode).toEqual(goNames);
  });

  it("keeps the generated action ranges sorted and apart", () => {
    let last = -1;
    for (const [first, end, action] of CLOSE_ACTIONS) {
      expect(first).toBeGreaterThan(last);
      expect(end).toBeGreaterThanOrEqual(first);
      expect(action).not.toBe(DEFAULT_CLOSE_ACTION);
      last = end;
    }
    expect(actionFor(Number.NaN)).toBe("backoff");
  });

  it("gives each code of the docs table the action the table names", () => {
    const doc = readFileSync(root + "docs/protocol.md", "utf8");
    const section = doc.slice(doc.indexOf("## Close codes"), doc.indexOf("## Limits"));
    const want = (text: string): string => {
      if (/do not reconnect/.test(text)) return "stop";
      if (/long-poll/i.test(text)) return "use-poll";
      if (/refresh the token/i.test(text)) return "refresh-token";
      if (/retry=|after the jittered hint|retry after/i.test(text)) return "retry-after";
      return "backoff";
    };
    let checked = 0;
    let rangeAction = "";
    for (const line of section.split("\n")) {
      const range = line.match(/^\| (\d{4})-(\d{4}) \| \| (.*) \|$/);
      if (range) {
        rangeAction = want(range[3]);
        for (const c of [Number(range[1]), Number(range[2])]) expect(actionFor(c), line).toBe(rangeAction);
        checked++;
        continue;
      }
      const row = line.match(/^\| (\d{4}) \| [^|]* \| (.*) \|$/);
      if (!row) continue;
      const code = Number(row[1]);
      // Rows inside a range inherit its action; standalone standard codes say theirs.
      const expected = code >= 4000 ? rangeAction : want(row[2]);
      expect(actionFor(code), line).toBe(expected);
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(20);
  });
});
