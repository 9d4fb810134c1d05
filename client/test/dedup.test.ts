import { describe, expect, it } from "vitest";
import { Dedup } from "../src/dedup.js";

describe("Dedup", () => {
  it("reports the second sighting of an ID as a duplicate", () => {
    let t = 0;
    const d = new Dedup({}, () => t);
    expect(d.check("a")).toBe(false);
    expect(d.check("b")).toBe(false);
    expect(d.check("a")).toBe(true);
    expect(d.size).toBe(2);
  });

  it("forgets IDs after the TTL", () => {
    let t = 1_000_000;
    const d = new Dedup({ ttlMs: 60_000 }, () => t);
    d.check("a");
    t += 59_999;
    expect(d.has("a")).toBe(true);
    expect(d.check("a")).toBe(true);
    t += 1; // exactly ttl after first sight
    expect(d.has("a")).toBe(false);
    expect(d.size).toBe(0);
    expect(d.check("a")).toBe(false); // seen again as new
  });

  it("a duplicate does not extend the ID's life", () => {
    let t = 0;
    const d = new Dedup({ ttlMs: 100 }, () => t);
    d.check("a");
    t = 90;
    expect(d.check("a")).toBe(true);
    t = 100;
    expect(d.has("a")).toBe(false);
  });

  it("holds at most maxSize IDs, forgetting the oldest first", () => {
    let t = 0;
    const d = new Dedup({ ttlMs: 1e12, maxSize: 1000 }, () => t++);
    for (let i = 0; i < 5000; i++) d.check("id-" + i);
    expect(d.size).toBe(1000);
    expect(d.evicted).toBe(4000);
    expect(d.has("id-3999")).toBe(false);
    expect(d.has("id-4000")).toBe(true);
    expect(d.has("id-4999")).toBe(true);
  });

  it("stays bounded in a tab open for days at a steady event rate", () => {
    let t = 0;
    const d = new Dedup({ ttlMs: 10 * 60_000, maxSize: 10_000 }, () => t);
    let maxSeen = 0;
    // Three days at 2 events per second: 518400 IDs pass through.
    for (let i = 0; i < 3 * 24 * 3600 * 2; i++) {
      t += 500;
      d.check("ev-" + i);
      if (i % 1000 === 0) maxSeen = Math.max(maxSeen, d.size);
    }
    // 10 minutes at 2/s is 1200 IDs: expiry, not the size cap, keeps it bounded.
    expect(maxSeen).toBeLessThanOrEqual(1200);
    expect(d.evicted).toBe(0);
    t += 10 * 60_000;
    expect(d.size).toBe(0);
  });

  it("rejects nonsense settings", () => {
    expect(() => new Dedup({ ttlMs: 0 })).toThrow(RangeError);
    expect(() => new Dedup({ maxSize: 0 })).toThrow(RangeError);
  });
});
