import { Timer } from "./timer.js";

/**
 * PollCause says why the client polls: the server said so (the flag, a transport frame or
 * close 43xx: its transport:"stream" brings the client back), or the stream failed on the
 * way (the server's "stream" does not mean this client can reach it; probes back off).
 */
export type PollCause = "server" | "failure";

/** ProbeOptions configures a ProbeSchedule. */
export interface ProbeOptions {
  now: () => number;
  /** Probe after this when the server gave no hint, ms. */
  intervalMs: number;
  /** Polling because the stream failed: failed probes double the wait up to this, ms. */
  maxMs: number;
}

/**
 * ProbeSchedule decides when a polling client tries the stream again: one timer, the
 * cause of polling, and the count of failed probes that doubles the wait when the stream
 * itself fails. onDue runs when a probe is due; the client opens the probe connection.
 */
export class ProbeSchedule {
  private why: PollCause = "server";
  private failures = 0;
  private dueAt = 0;
  private readonly timer = new Timer();

  constructor(
    private readonly opts: ProbeOptions,
    private readonly onDue: () => void,
  ) {}

  /** intervalMs is the wait before a probe when nothing else says when. */
  get intervalMs(): number {
    return this.opts.intervalMs;
  }

  get cause(): PollCause {
    return this.why;
  }

  /** followsServer reports whether the server's transport advice applies (it made the client poll). */
  get followsServer(): boolean {
    return this.why === "server";
  }

  /** armed reports whether a probe is scheduled. */
  get armed(): boolean {
    return this.timer.armed;
  }

  /**
   * schedule arranges a probe in ms. With earliestOnly, an already scheduled earlier
   * probe is kept: a hint repeated in every poll answer cannot postpone it forever.
   */
  schedule(ms: number, earliestOnly = false): void {
    const due = this.opts.now() + Math.max(0, ms);
    if (this.timer.armed && earliestOnly && this.dueAt <= due) return;
    this.dueAt = due;
    this.timer.set(ms, this.onDue);
  }

  /** clear cancels the scheduled probe. */
  clear(): void {
    this.timer.clear();
  }

  /** begin records why polling starts; the server's reasons forget earlier failed probes. */
  begin(cause: PollCause): void {
    this.why = cause;
    if (cause === "server") this.failures = 0;
  }

  /** refused records a probe the server refused (close 43xx): the server decides again. */
  refused(): void {
    this.why = "server";
  }

  /** failed records a failed probe and returns the wait before the next one. */
  failed(): number {
    this.why = "failure";
    this.failures++;
    return Math.min(this.opts.maxMs, this.opts.intervalMs * 2 ** Math.min(this.failures, 20));
  }

  /** welcomed records that the stream works: the next switch starts afresh. */
  welcomed(): void {
    this.why = "server";
    this.failures = 0;
  }
}
