/** BackoffOptions configures exponential backoff with full jitter. */
export interface BackoffOptions {
  /** First ceiling in ms (attempt 0 waits in [0, baseMs)). Default 1000. */
  baseMs?: number;
  /** Largest ceiling in ms. Default 300000 (5 minutes). */
  capMs?: number;
  /** Growth of the ceiling per attempt. Default 2. */
  factor?: number;
}

export const DEFAULT_BACKOFF: Required<BackoffOptions> = {
  baseMs: 1000,
  capMs: 5 * 60 * 1000,
  factor: 2,
};

/**
 * Backoff computes reconnect delays: exponential with "full jitter" (AWS architecture
 * blog), delay = random() * min(cap, base * factor^attempt). Spreading every delay over
 * [0, ceiling) keeps a fleet of tabs from reconnecting in step after a server restart.
 * Not safe for concurrent use (nothing in a browser is).
 */
export class Backoff {
  readonly baseMs: number;
  readonly capMs: number;
  readonly factor: number;
  private attempt = 0;

  constructor(
    opts: BackoffOptions = {},
    private readonly random: () => number = Math.random,
  ) {
    this.baseMs = opts.baseMs ?? DEFAULT_BACKOFF.baseMs;
    this.capMs = opts.capMs ?? DEFAULT_BACKOFF.capMs;
    this.factor = opts.factor ?? DEFAULT_BACKOFF.factor;
    if (!(this.baseMs > 0) || !(this.capMs >= this.baseMs) || !(this.factor >= 1)) {
      throw new RangeError(
        `backoff: need baseMs > 0, capMs >= baseMs, factor >= 1 (got ${this.baseMs}, ${this.capMs}, ${this.factor})`,
      );
    }
  }

  /** ceiling returns the upper bound of the delay for attempt n (0-based). */
  ceiling(n: number): number {
    // Compare exponents first so that a large n cannot overflow to Infinity/NaN.
    const limit = Math.log(this.capMs / this.baseMs) / Math.log(this.factor);
    if (this.factor === 1 || n < limit) return Math.min(this.capMs, this.baseMs * this.factor ** n);
    return this.capMs;
  }

  /** next returns the delay before the next attempt and counts the attempt. */
  next(): number {
    const r = this.random();
    const u = r >= 0 && r < 1 ? r : 0;
    return Math.floor(u * this.ceiling(this.attempt++));
  }

  /** attempts is the number of delays handed out since the last reset. */
  get attempts(): number {
    return this.attempt;
  }

  /** reset starts the sequence again (after a connection proved stable). */
  reset(): void {
    this.attempt = 0;
  }
}
