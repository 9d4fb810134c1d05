/** DedupOptions bounds the memory of seen event IDs. */
export interface DedupOptions {
  /** How long an ID is remembered, ms. Default 10 minutes. */
  ttlMs?: number;
  /** Most IDs remembered at once. Default 10000. */
  maxSize?: number;
}

/**
 * Dedup remembers recently seen event IDs so that events delivered twice across a
 * reconnect are dropped. Memory is bounded two ways: an ID expires after ttlMs, and when
 * more than maxSize IDs are held the oldest are forgotten first.
 *
 * A Map iterates in insertion order and IDs are inserted with a non-decreasing clock, so
 * the oldest entries are always at the front: expiry and eviction pop from the front in
 * amortised O(1), no timers needed.
 */
export class Dedup {
  readonly ttlMs: number;
  readonly maxSize: number;
  private readonly seenAt = new Map<string, number>();
  /** evicted counts IDs forgotten because of maxSize (not expiry). */
  evicted = 0;

  constructor(
    opts: DedupOptions = {},
    private readonly now: () => number = Date.now,
  ) {
    this.ttlMs = opts.ttlMs ?? 10 * 60 * 1000;
    this.maxSize = opts.maxSize ?? 10000;
    if (!(this.ttlMs > 0) || !(this.maxSize >= 1)) {
      throw new RangeError(`dedup: need ttlMs > 0 and maxSize >= 1 (got ${this.ttlMs}, ${this.maxSize})`);
    }
  }

  /**
   * check records id and reports whether it was already seen (a duplicate) within the
   * TTL. A duplicate does not refresh the ID's expiry: insertion order stays time order.
   */
  check(id: string): boolean {
    const t = this.now();
    this.expire(t);
    const at = this.seenAt.get(id);
    if (at !== undefined) return true;
    this.seenAt.set(id, t);
    while (this.seenAt.size > this.maxSize) {
      const oldest = this.seenAt.keys().next().value as string;
      this.seenAt.delete(oldest);
      this.evicted++;
    }
    return false;
  }

  /** has reports whether id is remembered (without recording it). */
  has(id: string): boolean {
    this.expire(this.now());
    return this.seenAt.has(id);
  }

  /** size is the number of IDs remembered now. */
  get size(): number {
    this.expire(this.now());
    return this.seenAt.size;
  }

  clear(): void {
    this.seenAt.clear();
  }

  private expire(t: number): void {
    for (const [id, at] of this.seenAt) {
      if (t - at < this.ttlMs) break;
      this.seenAt.delete(id);
    }
  }
}
