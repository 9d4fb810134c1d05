// The long-polling transport: GET /v2/realtime/poll, one request at a time (docs/protocol.md
// "Long-polling"). What an answer means (deliver, probe, back off, stop) is the client's.
import { Timer } from "./timer.js";
import type { PollResponse } from "./types.js";
import { withQuery } from "./urls.js";

/** PollOptions configures a PollTransport. */
export interface PollOptions {
  /** fetch implementation; default globalThis.fetch (looked up at each request). */
  fetch?: typeof fetch;
  now: () => number;
  /** Abort a request after this, ms. */
  timeoutMs: number;
}

/** PollQuery is what one poll asks for. */
export interface PollQuery {
  /** The poll endpoint (see urls.pollBaseUrl). */
  url: string;
  channels: string[];
  /** `<seq>.<epoch>`, or null on the very first poll. */
  cursor: string | null;
  token?: string;
}

/** PollResult is how one poll ended. */
export type PollResult =
  /** 200: the answer, the channels it was for and the local time the request started. */
  | { kind: "answer"; body: PollResponse; channels: string[]; started: number }
  /** Another HTTP status, with the retry hint of its body (`retryMs`) or `Retry-After`, ms. */
  | { kind: "refused"; status: number; hintMs: number }
  /** No answer: a network error, the timeout, a body that is not JSON. */
  | { kind: "failed"; error: unknown };

/** One request in flight. */
interface Request {
  ctl: AbortController;
  cancelled: boolean;
}

/** pollUrl is the poll URL of q. */
export function pollUrl(q: PollQuery): string {
  const params = [`channels=${q.channels.map(encodeURIComponent).join(",")}`];
  if (q.cursor) params.push(`cursor=${q.cursor}`);
  if (q.token) params.push(`token=${encodeURIComponent(q.token)}`);
  return withQuery(q.url, params);
}

/** retryAfterMs is the retry hint of a refused poll: the body's retryMs, else Retry-After seconds, else 0. */
export function retryAfterMs(res: Response, body: PollResponse | null): number {
  if (body && typeof body.retryMs === "number" && body.retryMs > 0) return body.retryMs;
  const h = res.headers?.get?.("Retry-After");
  if (h && /^\d+$/.test(h.trim())) return Number(h.trim()) * 1000;
  return 0;
}

/**
 * PollTransport sends poll requests, one at a time, and the timer of the next one. A new
 * request or stop() cancels the one in flight (aborted; its result is never reported).
 */
export class PollTransport {
  private req: Request | null = null;
  private readonly next = new Timer();

  constructor(private readonly opts: PollOptions) {}

  /** available reports whether there is a fetch implementation to poll with. */
  get available(): boolean {
    return Boolean(this.opts.fetch ?? (globalThis as any).fetch);
  }

  /** inFlight reports whether a request is waiting for its answer. */
  get inFlight(): boolean {
    return this.req !== null;
  }

  /**
   * request starts a poll for q, cancelling the one in flight, and calls done once with
   * its result unless it is cancelled first. If done throws on an answer, done is called
   * again with that error as a failed result.
   */
  request(q: PollQuery, done: (r: PollResult) => void): void {
    const f: typeof fetch = this.opts.fetch ?? (globalThis as any).fetch;
    this.cancel();
    const url = pollUrl(q);
    const req: Request = { ctl: new AbortController(), cancelled: false };
    this.req = req;
    const started = this.opts.now();
    const timeout = setTimeout(() => req.ctl.abort(), this.opts.timeoutMs);
    const live = () => !req.cancelled;
    Promise.resolve()
      .then(() => f(url, { signal: req.ctl.signal, credentials: "same-origin", headers: { Accept: "application/json" } }))
      .then(async (res: Response) => {
        if (!live()) return;
        if (!res.ok) {
          let body: PollResponse | null = null;
          try {
            body = await res.json();
          } catch {
            // no JSON body
          }
          if (!live()) return;
          return done({ kind: "refused", status: res.status, hintMs: retryAfterMs(res, body) });
        }
        const body = (await res.json()) as PollResponse;
        if (!live()) return;
        done({ kind: "answer", body, channels: q.channels, started });
      })
      .catch((error) => {
        if (!live()) return;
        done({ kind: "failed", error });
      })
      .finally(() => {
        clearTimeout(timeout);
        if (this.req === req) this.req = null;
      });
  }

  /** after runs fn (the next poll) after ms, replacing a pending one. */
  after(ms: number, fn: () => void): void {
    this.next.set(ms, fn);
  }

  /** stop cancels the request in flight and the pending next poll. */
  stop(): void {
    this.cancel();
    this.next.clear();
  }

  private cancel(): void {
    if (!this.req) return;
    this.req.cancelled = true;
    this.req.ctl.abort();
    this.req = null;
  }
}
