import { describe, expect, it } from "vitest";
import { Backoff } from "../src/backoff.js";

/** seeded is a small deterministic PRNG (mulberry32) so spread checks are repeatable. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("Backoff", () => {
  it("grows the ceiling exponentially from base and stays within [0, ceiling)", () => {
    const b = new Backoff({ baseMs: 1000, capMs: 300000, factor: 2 }, () => 0.999999);
    const want = [1000, 2000, 4000, 8000, 16000, 32000, 64000, 128000, 256000, 300000, 300000];
    for (const ceiling of want) {
      const d = b.next();
      expect(d).toBeLessThan(ceiling);
      expect(d).toBeGreaterThanOrEqual(Math.floor(ceiling * 0.999));
    }
  });

  it("full jitter: random()=0 gives 0", () => {
    const b = new Backoff({}, () => 0);
    for (let i = 0; i < 20; i++) expect(b.next()).toBe(0);
  });

  it("caps at 5 minutes by default, even after very many attempts", () => {
    const b = new Backoff({}, () => 0.9999999);
    expect(b.capMs).toBe(300000);
    let max = 0;
    for (let i = 0; i < 5000; i++) {
      const d = b.next();
      expect(Number.isFinite(d)).toBe(true);
      max = Math.max(max, d);
    }
    expect(max).toBeLessThan(300000);
    expect(max).toBeGreaterThan(299000);
    expect(b.ceiling(1e9)).toBe(300000);
    expect(b.ceiling(1024)).toBe(300000); // 2^1024 overflows a double: must not become NaN/Infinity
  });

  it("spreads delays over the whole [0, ceiling) range (full jitter)", () => {
    const rnd = seeded(42);
    const ceiling = 8000; // attempt 3 with base 1000
    const samples: number[] = [];
    for (let i = 0; i < 4000; i++) {
      const b = new Backoff({ baseMs: 1000 }, rnd);
      b.next();
      b.next();
      b.next();
      samples.push(b.next());
    }
    const mean = samples.reduce((a, b) => a + b, 0) / samples.length;
    expect(Math.min(...samples)).toBeLessThan(ceiling * 0.02);
    expect(Math.max(...samples)).toBeGreaterThan(ceiling * 0.98);
    expect(mean).toBeGreaterThan(ceiling * 0.45);
    expect(mean).toBeLessThan(ceiling * 0.55);
    // Ten buckets each hold roughly a tenth: no clustering.
    const buckets = new Array(10).fill(0);
    for (const s of samples) buckets[Math.floor((s / ceiling) * 10)]++;
    for (const n of buckets) {
      expect(n).toBeGreaterThan(samples.length * 0.07);
      expect(n).toBeLessThan(samples.length * 0.13);
    }
  });

  it("honours custom base, cap and factor, and reset starts over", () => {
    const b = new Backoff({ baseMs: 100, capMs: 1000, factor: 3 }, () => 0.999999);
    const got = [b.next(), b.next(), b.next(), b.next()];
    expect(got.map((d) => Math.ceil(d / 10) * 10)).toEqual([100, 300, 900, 1000]);
    expect(b.attempts).toBe(4);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.next()).toBeLessThan(100);
  });

  it("rejects nonsense settings", () => {
    expect(() => new Backoff({ baseMs: 0 })).toThrow(RangeError);
    expect(() => new Backoff({ baseMs: 10, capMs: 5 })).toThrow(RangeError);
    expect(() => new Backoff({ factor: 0.5 })).toThrow(RangeError);
  });

  it("treats an out-of-range random source as 0 rather than exceeding the ceiling", () => {
    const b = new Backoff({}, () => 7);
    expect(b.next()).toBe(0);
  });
});
