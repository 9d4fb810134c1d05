// Subscriptions: the app's channels and handlers, what is subscribed on the current
// connection, the cursor, dedup and delivery. Both transports deliver through it.
import { CursorTracker } from "./cursor.js";
import { Dedup, type DedupOptions } from "./dedup.js";
import type { Emitter } from "./emitter.js";
import type { ClientEvents, EventHandler } from "./events.js";
import type { HealthMonitor } from "./health.js";
import type { Cursor, ErrorFrame, EventsFrame, PingFrame, PollResponse, RealtimeEvent, Recovery, SubscribedFrame, WelcomeFrame } from "./types.js";

/** SubscriptionsOptions configures Subscriptions. */
export interface SubscriptionsOptions {
  now: () => number;
  /** Random source in [0,1) for the retry jitter of refused-for-now channels. */
  random: () => number;
  dedup?: DedupOptions;
  /** A fresh client's first subscribe within this of welcome starts from the welcome's head, ms. */
  baselineWindowMs: number;
}

/** SubscriptionsHost is what Subscriptions needs from the client. */
export interface SubscriptionsHost {
  /** send writes a frame on the current stream connection; false if it did not go out. */
  send(frame: object): boolean;
  /** open reports whether the client is in state "open" (subscribes go out only then). */
  open(): boolean;
  /** healthChanged emits a fresh health snapshot now. */
  healthChanged(): void;
}

/** Session is the subscription state of one welcomed stream connection. */
interface Session {
  welcome: WelcomeFrame;
  welcomedAt: number;
  /** Channels subscribed (sent) on this connection. */
  channels: Set<string>;
  /** True once a subscribe went out (the only one that may carry a cursor). */
  subscribed: boolean;
  /** "resume" if the first subscribe carried a cursor from events, "baseline" if from welcome. */
  cursorKind: "resume" | "baseline" | null;
  /** Channels of the first subscribe (for resync). */
  firstChannels: string[];
  /**
   * A `subscribed` answer to a subscribe arrived. The server answers in order, so the first
   * one answers the connection's first subscribe (the one with the cursor), or that one was
   * refused and recovers nothing: server pings may move the cursor from then on.
   */
  firstAnswered: boolean;
  /** The epoch of this connection: the welcome's, then the first subscribe answer's. */
  epoch: string;
  /** Subscribe frames sent and not answered yet: request ID -> channels. */
  pending: Map<string, string[]>;
  /** Retry of refused-for-now channels, if scheduled. */
  retry: ReturnType<typeof setTimeout> | null;
}

/** Channel codes that refuse a subscribe for now: the client asks again shortly. */
const RETRY_CODES = new Set(["replay_in_progress", "rate_limited"]);

/** Subscribe frames pending an answer kept per connection, at most. */
const MAX_PENDING = 64;

let subscribeIds = 0;

/**
 * Subscriptions keeps the channel -> handlers map and makes the current stream
 * connection's subscriptions match it: the first subscribe of a connection carries every
 * channel and the cursor (protocol "Recovery"); later changes go out as plain subscribe
 * and unsubscribe frames. It reads the server's per-channel answers (refused channels are
 * reported, refused-for-now ones asked again), handles recovery answers (resync), tracks
 * the cursor, drops duplicates and calls handlers. Not safe for concurrent use.
 */
export class Subscriptions {
  /** cursor is the resume position (advanced by every processed event). */
  readonly cursor = new CursorTracker();
  private readonly handlers = new Map<string, Set<EventHandler<any>>>();
  private readonly dedup: Dedup;
  /** Replayed events have seq <= replayTo: not counted in latency. */
  private replayTo = 0;
  private session: Session | null = null;

  constructor(
    private readonly opts: SubscriptionsOptions,
    private readonly monitor: HealthMonitor,
    private readonly emitter: Emitter<ClientEvents>,
    private readonly host: SubscriptionsHost,
  ) {
    this.dedup = new Dedup(opts.dedup, opts.now);
  }

  /** channels lists the channels with at least one handler, in subscription order. */
  get channels(): string[] {
    return [...this.handlers.keys()];
  }

  /** add registers handler for channel; it reports whether the channel is new. */
  add(channel: string, handler: EventHandler<any>): boolean {
    let set = this.handlers.get(channel);
    const fresh = !set;
    if (!set) {
      set = new Set();
      this.handlers.set(channel, set);
    }
    set.add(handler);
    return fresh;
  }

  /** remove drops handler; it reports whether the channel lost its last handler. */
  remove(channel: string, handler: EventHandler<any>): boolean {
    const s = this.handlers.get(channel);
    if (!s) return false;
    s.delete(handler);
    if (s.size > 0) return false;
    this.handlers.delete(channel);
    return true;
  }

  // ---- the current stream connection ----

  /** begin starts the session of a welcomed connection: nothing is subscribed on it yet. */
  begin(welcome: WelcomeFrame, welcomedAt: number): void {
    this.end();
    this.session = {
      welcome,
      welcomedAt,
      channels: new Set(),
      subscribed: false,
      cursorKind: null,
      firstChannels: [],
      firstAnswered: false,
      epoch: welcome.epoch ?? "",
      pending: new Map(),
      retry: null,
    };
  }

  /** end forgets the connection's session (it was retired). */
  end(): void {
    if (this.session?.retry) clearTimeout(this.session.retry);
    this.session = null;
  }

  /**
   * flush makes the connection's channel set match the handlers. The first subscribe of
   * a connection carries the cursor and every channel (protocol "Recovery").
   */
  flush(): void {
    const conn = this.session;
    if (!conn || !this.host.open()) return;
    const add = this.channels.filter((c) => !conn.channels.has(c));
    const drop = [...conn.channels].filter((c) => !this.handlers.has(c));
    if (drop.length > 0 && this.host.send({ type: "unsubscribe", channels: drop })) {
      for (const c of drop) conn.channels.delete(c);
    }
    if (add.length === 0) return;
    const frame: { type: "subscribe"; id: string; channels: string[]; cursor?: Cursor } = {
      type: "subscribe",
      id: "s" + ++subscribeIds,
      channels: add,
    };
    if (!conn.subscribed) {
      const cur = this.cursor.value;
      if (cur) {
        frame.cursor = cur;
        conn.cursorKind = "resume";
      } else if (this.opts.now() - conn.welcomedAt <= this.opts.baselineWindowMs) {
        // A fresh client starts from the head announced by this connection's welcome:
        // every event published after the socket opened reaches it, even before the
        // subscribe is registered, and later resumes start from a real position.
        frame.cursor = this.cursor.baseline(conn.welcome);
        conn.cursorKind = "baseline";
      }
      // Otherwise (the first subscribe comes long after welcome) the welcome's head is
      // stale: replaying from it would hand the app events from before it subscribed. The
      // subscription is live from now and the cursor starts at its first event.
      conn.firstChannels = add;
    }
    if (this.host.send(frame)) {
      conn.subscribed = true;
      for (const c of add) conn.channels.add(c);
      conn.pending.set(frame.id, add);
      // Bound the map even if a server never answers some frames.
      if (conn.pending.size > MAX_PENDING) conn.pending.delete(conn.pending.keys().next().value as string);
    }
  }

  /**
   * retryLater forgets channels the server refused for now (a replay in progress, rate
   * limited) and subscribes them again after a short pause on the same connection.
   */
  private retryLater(conn: Session, channels: string[]): void {
    for (const c of channels) conn.channels.delete(c);
    if (conn.retry !== null) return;
    conn.retry = setTimeout(() => {
      conn.retry = null;
      if (this.session === conn) this.flush();
    }, 250 + Math.floor(this.opts.random() * 250));
  }

  /** onSubscribed reads the answer to a subscribe or unsubscribe frame. */
  onSubscribed(f: SubscribedFrame): void {
    const conn = this.session;
    if (!conn) return;
    if (f.id) conn.pending.delete(f.id);
    if (f.op !== "unsubscribe" && !conn.firstAnswered) {
      conn.firstAnswered = true;
      if (f.epoch) conn.epoch = f.epoch;
    }
    const later: string[] = [];
    for (const r of f.results ?? []) {
      if (!r.ok && r.code !== undefined && RETRY_CODES.has(r.code)) {
        later.push(r.channel);
      } else if (!r.ok) {
        conn.channels.delete(r.channel);
        this.emitter.emit("error", {
          kind: "channel",
          channel: r.channel,
          code: r.code,
          message: r.error ?? r.code ?? "refused",
        });
      }
    }
    if (later.length > 0 && f.op !== "unsubscribe") this.retryLater(conn, later);
    if (f.op !== "unsubscribe") {
      const ok = (f.results ?? []).filter((r) => r.ok).map((r) => r.channel);
      if (ok.length > 0) this.emitter.emit("subscribed", ok);
    }
    if (f.recovery) {
      const epoch = f.epoch ?? conn.welcome.epoch ?? "";
      this.onRecovery(f.recovery, epoch, conn.welcome.seq ?? 0, conn.firstChannels, conn.cursorKind === "resume");
    }
  }

  /**
   * onPing reads a server `ping`: its head {seq, epoch}, if any, becomes the cursor when the
   * answer to this connection's first subscribe has arrived (before it, the ping may precede
   * the events that subscribe recovers), forwards only and in the cursor's epoch
   * (docs/protocol.md "Fresh cursors on quiet channels"). So a client on quiet channels keeps
   * a fresh cursor while other channels move the bus past retention. Pings of older servers
   * carry no head and change nothing.
   */
  onPing(f: PingFrame): void {
    const conn = this.session;
    if (!conn || !conn.firstAnswered) return;
    this.cursor.fromPing(f.seq, f.epoch, conn.epoch);
  }

  /** onErrorFrame reads an `error` frame; one answering a pending subscribe unsubscribes its channels. */
  onErrorFrame(f: ErrorFrame): void {
    const conn = this.session;
    const chans = conn && f.id ? conn.pending.get(f.id) : undefined;
    if (conn && chans) {
      // A subscribe frame was refused as a whole: those channels are not subscribed.
      conn.pending.delete(f.id!);
      if (RETRY_CODES.has(f.code)) return this.retryLater(conn, chans);
      for (const c of chans) conn.channels.delete(c);
    }
    this.emitter.emit("error", { kind: "frame", code: f.code, message: f.message ?? f.code });
  }

  /** onRecovery handles the recovery answer of a stream resume or of a poll. */
  private onRecovery(r: Recovery, epoch: string, headSeq: number, channels: string[], counted: boolean): void {
    if (r.recovered) {
      if (counted) this.monitor.recoveries++;
      this.replayTo = Math.max(this.replayTo, r.to ?? 0);
      this.host.healthChanged();
      return;
    }
    this.monitor.notRecovered++;
    const reason = r.reason ?? "not_recovered";
    const continued = this.cursor.notRecovered(r, epoch, headSeq);
    this.emitter.emit("resync", { reason, channels: [...channels], epoch: continued });
    this.host.healthChanged();
  }

  // ---- delivery ----

  /** onEvents delivers an `events` frame of the stream, received at local time at; false if it has no events list. */
  onEvents(f: EventsFrame, at: number): boolean {
    if (!Array.isArray(f.events)) return false;
    for (const ev of f.events) this.deliver(ev, at);
    return true;
  }

  /**
   * applyPoll takes a poll answer for channels: its recovery, its events, then its
   * cursor (which may be beyond the last event).
   */
  applyPoll(body: PollResponse, channels: string[], receivedAt: number): number {
    if (body.recovery) {
      this.onRecovery(body.recovery, body.cursor?.epoch ?? this.cursor.value?.epoch ?? "", body.cursor?.seq ?? 0, channels, true);
    }
    const events = Array.isArray(body.events) ? body.events : [];
    for (const ev of events) this.deliver(ev, receivedAt);
    this.cursor.fromPoll(body.cursor);
    return events.length;
  }

  /** deliver advances the cursor, drops duplicates and calls the channel's handlers. */
  private deliver(ev: RealtimeEvent, receivedAt: number): void {
    if (!ev || typeof ev.id !== "string" || typeof ev.seq !== "number" || typeof ev.channel !== "string") {
      this.emitter.emit("error", { kind: "protocol", message: "malformed event" });
      return;
    }
    this.cursor.observe(ev.seq, this.session ? (this.session.welcome.epoch ?? "") : null);
    if (this.dedup.check(ev.id)) {
      this.monitor.duplicates++;
      return;
    }
    this.monitor.eventsReceived++;
    if (ev.seq > this.replayTo && typeof ev.ts === "number" && ev.ts > 0) this.monitor.latency(ev.ts, receivedAt);
    const set = this.handlers.get(ev.channel);
    if (!set) return;
    for (const h of [...set]) {
      try {
        h(ev);
      } catch (err) {
        this.emitter.emit("error", { kind: "handler", channel: ev.channel, message: String(err), cause: err });
      }
    }
  }
}
