import type { Cursor, Recovery, WelcomeFrame } from "./types.js";

/**
 * CursorTracker holds the client's resume position {seq, epoch} (docs/client.md "Cursor,
 * recovery and dedup"): the highest seq processed and the epoch of the stream it belongs
 * to. It never moves backwards within an epoch; only a recovery the server refused, or a
 * poll answer of another epoch, resets it.
 */
export class CursorTracker {
  private cur: Cursor | null = null;

  /** value is a copy of the cursor; null before the client has a position. */
  get value(): Cursor | null {
    return this.cur ? { ...this.cur } : null;
  }

  /** has reports whether the client has a position yet. */
  get has(): boolean {
    return this.cur !== null;
  }

  /**
   * observe records a processed event (delivered or dropped as a duplicate). Without a
   * position yet, the cursor starts at this event when epoch is known (a welcomed stream
   * connection), and stays unset otherwise.
   */
  observe(seq: number, epoch: string | null): void {
    if (this.cur) {
      if (seq > this.cur.seq) this.cur.seq = seq;
    } else if (epoch !== null) {
      this.cur = { seq, epoch };
    }
  }

  /**
   * baseline starts a fresh client at the head announced by welcome, so that every event
   * published after the socket opened reaches it.
   */
  baseline(w: WelcomeFrame): Cursor {
    this.cur = { seq: w.seq ?? 0, epoch: w.epoch ?? "" };
    return { ...this.cur };
  }

  /**
   * notRecovered applies an answer recovered:false: the position restarts at the head
   * headSeq of epoch when the epoch changed or the cursor was ahead, else it keeps the
   * higher seq. It returns the epoch the client continues with.
   */
  notRecovered(r: Recovery, epoch: string, headSeq: number): string {
    const reason = r.reason ?? "not_recovered";
    const old = this.cur;
    const reset = !old || reason === "epoch_mismatch" || reason === "cursor_ahead" || (epoch !== "" && old.epoch !== epoch);
    this.cur = { seq: reset ? headSeq : Math.max(old!.seq, headSeq), epoch: epoch || old?.epoch || "" };
    return this.cur.epoch;
  }

  /**
   * fromPing takes the head {seq, epoch} of a server ping (docs/protocol.md "Fresh cursors on
   * quiet channels"): forwards in the cursor's epoch, or as the first position when the
   * client has none and epoch is its connection's (connEpoch). The caller checks that the
   * connection's first subscribe was answered. It reports whether the cursor moved.
   */
  fromPing(seq: unknown, epoch: unknown, connEpoch: string): boolean {
    if (typeof seq !== "number" || !Number.isSafeInteger(seq) || seq <= 0 || typeof epoch !== "string" || epoch === "") return false;
    if (this.cur) {
      if (epoch !== this.cur.epoch || seq <= this.cur.seq) return false;
      this.cur.seq = seq;
      return true;
    }
    if (epoch !== connEpoch) return false;
    this.cur = { seq, epoch };
    return true;
  }

  /** fromPoll takes the cursor of a poll answer: later in the epoch, or of another epoch. */
  fromPoll(c: Cursor | undefined): void {
    if (!c || typeof c.seq !== "number") return;
    if (!this.cur || c.epoch !== this.cur.epoch || c.seq > this.cur.seq) {
      this.cur = { seq: c.seq, epoch: String(c.epoch ?? "") };
    }
  }

  /** query is the cursor as the poll endpoint's `cursor` parameter, `<seq>.<epoch>`; null without one. */
  query(): string | null {
    return this.cur ? `${this.cur.seq}.${encodeURIComponent(this.cur.epoch)}` : null;
  }
}
