// RealtimeClient: the public API and the decisions. The transports (stream.ts, poll.ts and
// the probe schedule in probe.ts) carry frames; subscriptions.ts keeps channels, cursor and
// delivery; state.ts asserts every state change. This file decides what a close, a poll
// answer or a network change means, and which transport runs.
import { Backoff, type BackoffOptions } from "./backoff.js";
import { actionFor, CloseCode, httpAction, retryHint } from "./codes.js";
import type { DedupOptions } from "./dedup.js";
import { Emitter } from "./emitter.js";
import type { ClientEvents, CloseInfo, EventHandler } from "./events.js";
import { HealthMonitor, type HealthSnapshot } from "./health.js";
import { PollTransport, type PollResult } from "./poll.js";
import { ProbeSchedule, type PollCause } from "./probe.js";
import { browserNetwork, type NetworkMonitor, type WebSocketCtor } from "./socket.js";
import { StateMachine, type ConnectionState, type StateEvent } from "./state.js";
import { StreamOpenError, StreamTransport, type StreamConn } from "./stream.js";
import { Subscriptions } from "./subscriptions.js";
import { Timer } from "./timer.js";
import type { TypedChannel, TypedEventHandler } from "./typed.js";
import type { Cursor, PollResponse, ServerFrame, Transport, TransportFrame, WelcomeFrame } from "./types.js";
import { pollBaseUrl, streamUrl } from "./urls.js";

/** RealtimeClientOptions configures a RealtimeClient. Every field is optional. */
export interface RealtimeClientOptions {
  /** Stream URL. Default: ws(s)://<page host>/v2/realtime/stream. */
  url?: string;
  /** Long-polling URL. Default: the stream URL with http(s) and /poll instead of /stream. */
  pollUrl?: string;
  /** Subscriber token, sent as the `token` query parameter (a `rt_token` cookie works too). */
  token?: string;
  /**
   * Called after close 4200-4299 (token expired) or HTTP 401 from the poll endpoint; the
   * client reconnects with the token it returns. Without it, those closes are final.
   */
  refreshToken?: () => string | Promise<string>;
  /** Reconnect backoff: base 1 s, factor 2, cap 5 minutes, full jitter. */
  backoff?: BackoffOptions;
  /** Seen-ID memory: 10 minutes, 10000 IDs. */
  dedup?: DedupOptions;
  /** Client ping interval (RTT and clock offset), ms. Default 15000. */
  pingIntervalMs?: number;
  /** Interval of the `health` frame sent to the server, ms; 0 disables. Default 30000. */
  healthIntervalMs?: number;
  /** Delay of the first `health` frame after each welcome, ms (at most the interval). Default 3000. */
  healthFirstMs?: number;
  /** Most frequent "health" event from event traffic, ms. Default 1000. */
  healthEmitMs?: number;
  /** A connection open this long resets the backoff sequence, ms. Default 10000. */
  stableAfterMs?: number;
  /** A connection attempt must reach `welcome` within this time, ms. Default 10000. */
  connectTimeoutMs?: number;
  /**
   * A fresh client (no cursor yet) whose first subscribe goes out within this long after
   * `welcome` resumes from the welcome's head, so nothing published since the socket opened
   * is missed; a later first subscribe is live from then. Default 5000.
   */
  baselineWindowMs?: number;
  /** Consecutive failed stream attempts that switch to long-polling; 0 never. Default 5. */
  breakerThreshold?: number;
  /** While polling, probe the stream after this long when the server gave no hint, ms. Default 60000. */
  probeIntervalMs?: number;
  /**
   * When polling because the stream itself failed (a proxy that blocks WebSockets), each
   * failed probe doubles the wait before the next one, up to this, ms. Default 600000.
   */
  probeMaxMs?: number;
  /** Abort a poll request after this long, ms. Default 65000. */
  pollTimeoutMs?: number;
  /** Wait this long before the next poll when a poll came back quickly and empty, ms. Default 1000. */
  pollIdleDelayMs?: number;
  /** Latency samples kept for p50/p99. Default 512. */
  latencyWindow?: number;
  /** WebSocket implementation. Default globalThis.WebSocket. */
  WebSocket?: WebSocketCtor;
  /** fetch implementation for long-polling. Default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Online/offline source. Default navigator.onLine and window events. */
  network?: NetworkMonitor;
  /** Wall clock, unix ms. Default Date.now. */
  now?: () => number;
  /** Random source in [0,1) for jitter. Default Math.random. */
  random?: () => number;
  /**
   * An illegal state transition (a client bug) throws when true and is logged (the client
   * goes on) when false. Default: true unless process.env.NODE_ENV is "production" (set
   * by bundlers; a page without one counts as production).
   */
  strictTransitions?: boolean;
}

export type { ClientError, ClientEvents, CloseInfo, EventHandler, ResyncInfo } from "./events.js";

/**
 * RealtimeClient keeps one WebSocket to /v2/realtime/stream for every channel the app
 * subscribes to, reconnects with backoff, resumes by cursor, drops duplicates, measures
 * its own health, and falls back to long-polling when the stream keeps failing or the
 * server says so.
 *
 * Lifecycle: create, subscribe (before or after connect), connect(); close() stops it for
 * good (connect() again starts over, keeping the cursor). Everything runs on the page's
 * event loop; handlers are called synchronously from the socket's message event.
 */
export class RealtimeClient {
  // Immutable after construction.
  private readonly opts: RealtimeClientOptions;
  private readonly now: () => number;
  private readonly random: () => number;
  private readonly emitter = new Emitter<ClientEvents>();
  private readonly backoff: Backoff;
  private readonly monitor: HealthMonitor;
  private readonly network: NetworkMonitor;
  private readonly machine: StateMachine;
  private readonly subs: Subscriptions;
  private readonly stream: StreamTransport;
  private readonly poll: PollTransport;
  private readonly probe: ProbeSchedule;

  // Connection decisions.
  /** The transport in use; "poll" also while a probe connects. Changed by setTransport (enterPoll re-asserts "poll"). */
  private mode: Transport = "stream";
  private token: string | undefined;
  private everWelcomed = false;
  /** Consecutive stream attempts that never reached welcome (the breaker counts them). */
  private failures = 0;
  /** The next reconnect, or the retry of a failed token refresh. */
  private readonly retry = new Timer();
  /** The refreshToken call in flight; cancelled by teardown. */
  private refreshing: { cancelled: boolean } | null = null;
  private lastCloseInfo: CloseInfo | null = null;
  private unsubscribeNetwork: (() => void) | null = null;
  /** A subscribe flush is queued for the end of this tick. */
  private flushQueued = false;

  // Health events.
  private readonly healthTimer = new Timer();
  private last: HealthSnapshot;

  constructor(opts: RealtimeClientOptions = {}) {
    this.opts = opts;
    this.now = opts.now ?? Date.now;
    this.random = opts.random ?? Math.random;
    this.backoff = new Backoff(opts.backoff, this.random);
    this.monitor = new HealthMonitor(this.now, opts.latencyWindow ?? 512);
    this.network = opts.network ?? browserNetwork();
    this.token = opts.token;
    this.last = this.monitor.snapshot();
    this.machine = new StateMachine(opts.strictTransitions);
    this.subs = new Subscriptions(
      { now: this.now, random: this.random, dedup: opts.dedup, baselineWindowMs: opts.baselineWindowMs ?? 5000 },
      this.monitor,
      this.emitter,
      { send: (f) => this.stream.send(f), open: () => this.st === "open", healthChanged: () => this.emitHealth() },
    );
    this.stream = new StreamTransport(
      {
        WebSocket: opts.WebSocket,
        now: this.now,
        connectTimeoutMs: opts.connectTimeoutMs ?? 10000,
        pingIntervalMs: opts.pingIntervalMs ?? 15000,
        healthIntervalMs: opts.healthIntervalMs ?? 30000,
        healthFirstMs: opts.healthFirstMs ?? 3000,
      },
      {
        traffic: (at) => (this.monitor.lastMessageAt = at),
        welcome: (conn, w) => this.onWelcome(conn, w),
        frame: (conn, f) => this.onFrame(conn, f),
        pong: (sentAt, receivedAt, serverTime) => {
          this.monitor.pong(sentAt, receivedAt, serverTime);
          this.emitHealth();
        },
        error: (err) => this.emitter.emit("error", err),
        closed: (conn, code, reason) => this.onStreamClosed(conn, code, reason),
        detached: () => this.subs.end(),
        healthReport: () => this.monitor.report(),
      },
    );
    this.poll = new PollTransport({ fetch: opts.fetch, now: this.now, timeoutMs: opts.pollTimeoutMs ?? 65000 });
    this.probe = new ProbeSchedule(
      { now: this.now, intervalMs: opts.probeIntervalMs ?? 60000, maxMs: opts.probeMaxMs ?? 600000 },
      () => this.probeStream(),
    );
  }

  private get st(): ConnectionState {
    return this.machine.state;
  }

  // ---- public API ----

  /** state is the current connection state. */
  get state(): ConnectionState {
    return this.st;
  }

  /** transport is how events arrive now ("poll" also while probing the stream). */
  get transport(): Transport {
    return this.mode;
  }

  /** cursor is the position the client resumes from; null before the first welcome. */
  get cursor(): Cursor | null {
    return this.subs.cursor.value;
  }

  /** channels lists the channels with at least one handler. */
  get channels(): string[] {
    return this.subs.channels;
  }

  /** closeInfo says why the client is closed; null unless state is "closed". */
  get closeInfo(): CloseInfo | null {
    return this.st === "closed" ? this.lastCloseInfo : null;
  }

  /** health returns a fresh snapshot of the connection's figures. */
  health(): HealthSnapshot {
    return this.monitor.snapshot();
  }

  /**
   * lastHealth is the snapshot passed to the latest "health" event: the same object until
   * the next event (what React's useSyncExternalStore needs).
   */
  get lastHealth(): HealthSnapshot {
    return this.last;
  }

  /** on adds a listener for a client event and returns a function that removes it. */
  on<K extends keyof ClientEvents>(name: K, fn: ClientEvents[K]): () => void {
    return this.emitter.on(name, fn);
  }

  /**
   * subscribe calls handler for every event of channel until the returned function is
   * called. Several handlers may share a channel; the channel is subscribed on the wire
   * once and unsubscribed when its last handler goes. A typed channel (a generated
   * helper's value, `orders("42")`) gives the handler its payload type (typed.ts).
   */
  subscribe<T>(channel: TypedChannel<T>, handler: TypedEventHandler<T>): () => void;
  subscribe<T = unknown>(channel: string, handler: EventHandler<T>): () => void;
  subscribe(channel: string, handler: (event: any) => void): () => void {
    if (typeof channel !== "string" || channel.length === 0) throw new TypeError("subscribe: empty channel");
    if (this.subs.add(channel, handler)) this.channelsChanged();
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (this.subs.remove(channel, handler)) this.channelsChanged();
    };
  }

  /** connect starts the client (no-op unless idle or closed). */
  connect(): void {
    if (this.st !== "idle" && this.st !== "closed") return;
    this.lastCloseInfo = null;
    this.failures = 0;
    this.backoff.reset();
    if (!this.unsubscribeNetwork) {
      this.unsubscribeNetwork = this.network.subscribe((online) => (online ? this.onOnline() : this.onOffline()));
    }
    this.start();
  }

  /** close stops the client for good: no reconnect until connect() is called again. */
  close(): void {
    if (this.st === "closed" || this.st === "idle") {
      this.unsubscribeNetwork?.();
      this.unsubscribeNetwork = null;
      return;
    }
    this.finish({ code: CloseCode.Normal, reason: "closed by app", byApp: true });
  }

  /**
   * reconnect drops the current connection and connects again at once (keeping the
   * cursor). Useful after the app knows the network changed.
   */
  reconnect(): void {
    if (this.st === "idle" || this.st === "closed" || this.st === "offline") return;
    this.teardown("reconnect");
    this.backoff.reset();
    this.start();
  }

  /** setToken replaces the token; an open stream gets it at once in an `auth` frame. */
  setToken(token: string): void {
    this.token = token;
    this.stream.send({ type: "auth", token });
  }

  // ---- state and health ----

  /** setState applies ev through the transition table (state.ts), which asserts it. */
  private setState(ev: StateEvent): void {
    const prev = this.machine.fire(ev);
    const s = this.machine.state;
    if (s === prev) return;
    this.monitor.setState(s);
    this.emitter.emit("state", s, prev);
    this.emitHealth();
  }

  private setTransport(t: Transport, reason: string): void {
    if (t === this.mode) return;
    this.mode = t;
    this.monitor.setTransport(t);
    this.emitter.emit("transport", t, reason);
    this.emitHealth();
  }

  /** emitHealth emits a fresh snapshot now (and drops a throttled one). */
  private emitHealth(): void {
    this.healthTimer.clear();
    this.last = this.monitor.snapshot();
    this.emitter.emit("health", this.last);
  }

  /** healthChanged emits a snapshot within healthEmitMs (event traffic). */
  private healthChanged(): void {
    if (this.healthTimer.armed) return;
    this.healthTimer.set(this.opts.healthEmitMs ?? 1000, () => this.emitHealth());
  }

  // ---- lifecycle ----

  /** start opens the transport of the current mode, or waits for the network. */
  private start(): void {
    if (!this.network.online()) {
      this.setState("offline");
      return;
    }
    if (this.mode === "poll") this.startPolling();
    else this.openSocket(false);
  }

  /** teardown stops every timer and transport of the current attempt; state is the caller's. */
  private teardown(reason: string): void {
    this.cancelRefresh();
    this.retry.clear();
    this.probe.clear();
    this.poll.stop();
    this.stream.retireCurrent(CloseCode.Normal, reason);
  }

  private finish(info: CloseInfo): void {
    this.teardown(info.reason || "closed");
    this.unsubscribeNetwork?.();
    this.unsubscribeNetwork = null;
    this.lastCloseInfo = info;
    this.setState("stop");
    this.emitter.emit("closed", info);
  }

  private scheduleReconnect(delayMs: number): void {
    this.retry.clear();
    this.setState("retry");
    this.retry.set(delayMs, () => this.start());
  }

  /** retryAfterDelay is the hint plus up to the hint again of jitter, within the backoff cap. */
  private retryAfterDelay(hintMs: number): number {
    if (hintMs <= 0) return this.backoff.next();
    return Math.min(this.backoff.capMs, hintMs + Math.floor(this.random() * hintMs));
  }

  private onOffline(): void {
    if (this.st === "idle" || this.st === "closed" || this.st === "offline") return;
    this.teardown("offline");
    this.setState("offline");
  }

  private onOnline(): void {
    if (this.st !== "offline") return;
    this.backoff.reset();
    this.failures = 0;
    this.start();
  }

  /**
   * refreshThen asks refreshToken for a new token in state reconnecting, then calls next;
   * a failing refresh is retried with backoff. Without refreshToken the close is final.
   */
  private refreshThen(next: () => void, close: { code: number; reason: string }): void {
    const refresh = this.opts.refreshToken;
    if (!refresh) {
      this.emitter.emit("error", { kind: "token", message: "token expired and no refreshToken option" });
      this.finish({ code: close.code, reason: close.reason, byApp: false });
      return;
    }
    this.setState("retry");
    const op = { cancelled: false };
    this.refreshing = op;
    const current = () => !op.cancelled && this.st === "reconnecting";
    Promise.resolve()
      .then(refresh)
      .then(
        (tok) => {
          if (!current()) return;
          this.refreshing = null;
          this.token = tok;
          next();
        },
        (err) => {
          if (!current()) return;
          this.refreshing = null;
          this.emitter.emit("error", { kind: "token", message: `refreshToken failed: ${String(err)}`, cause: err });
          this.retry.set(this.backoff.next(), () => this.refreshThen(next, close));
        },
      );
  }

  private cancelRefresh(): void {
    if (this.refreshing) this.refreshing.cancelled = true;
    this.refreshing = null;
  }

  // ---- stream ----

  private openSocket(probing: boolean): void {
    this.retry.clear();
    try {
      this.stream.open(() => streamUrl(this.opts.url, this.token), probing);
    } catch (err) {
      if (!(err instanceof StreamOpenError)) throw err;
      // A bad URL can never work: stop instead of looping.
      this.emitter.emit("error", { kind: "protocol", message: `cannot open ${this.opts.url}: ${String(err.cause)}`, cause: err.cause });
      this.finish({ code: CloseCode.BadRequest, reason: "bad url", byApp: false });
      return;
    }
    if (!probing) this.setState("connect");
  }

  private onWelcome(conn: StreamConn, w: WelcomeFrame): void {
    this.subs.begin(w, conn.welcomedAt);
    this.failures = 0;
    if (this.everWelcomed) this.monitor.reconnects++;
    this.everWelcomed = true;
    this.monitor.session = w.session ?? null;
    this.monitor.instance = w.instance ?? null;
    this.probe.clear();
    this.poll.stop();
    this.probe.welcomed();
    this.setTransport("stream", "stream welcomed");
    this.setState("welcome");
    this.emitter.emit("welcome", w);
    this.subs.flush();
  }

  private onFrame(conn: StreamConn, frame: ServerFrame): void {
    switch (frame.type) {
      case "subscribed":
        return this.subs.onSubscribed(frame);
      case "events":
        if (this.subs.onEvents(frame, this.now())) this.healthChanged();
        return;
      case "transport":
        return this.onTransport(conn, frame);
      case "error":
        return this.subs.onErrorFrame(frame);
      case "ping":
        return this.subs.onPing(frame); // answered by the transport; its head may move the cursor
      default:
        return; // unknown frame types are ignored (protocol: frames can be added)
    }
  }

  private onTransport(conn: StreamConn, f: TransportFrame): void {
    if (f.transport !== "poll") return; // "stream": we are on it already
    this.stream.retire(conn, CloseCode.Normal, "switching to long-poll");
    this.switchToPoll(f.retryMs && f.retryMs > 0 ? f.retryMs : this.probe.intervalMs, f.reason ?? "server asked");
  }

  /** onStreamClosed decides what the end of a stream connection (or probe) leads to. */
  private onStreamClosed(conn: StreamConn, code: number, reason: string): void {
    if (this.st === "closed") return;
    const action = actionFor(code);
    const hint = retryHint(reason);
    if (conn.welcome) {
      if (this.now() - conn.openedAt >= (this.opts.stableAfterMs ?? 10000)) this.backoff.reset();
    } else {
      this.failures++;
    }
    if (conn.probing) {
      // The stream is still not usable: keep polling, probe again later.
      if (action === "stop") return this.finish({ code, reason, byApp: false });
      if (action === "use-poll") {
        this.probe.refused();
        return this.enterPoll(hint > 0 ? hint : this.probe.intervalMs);
      }
      return this.enterPoll(this.probe.failed());
    }
    switch (action) {
      case "stop":
        return this.finish({ code, reason, byApp: false });
      case "use-poll":
        return this.switchToPoll(hint > 0 ? hint : this.probe.intervalMs, `close ${code}`);
      case "refresh-token":
        return this.refreshThen(() => this.start(), { code, reason });
      case "retry-after":
        return this.scheduleReconnect(this.retryAfterDelay(hint));
      case "backoff": {
        const threshold = this.opts.breakerThreshold ?? 5;
        if (threshold > 0 && this.failures >= threshold) {
          return this.switchToPoll(this.probe.intervalMs, `${this.failures} failed stream attempts`, "failure");
        }
        return this.scheduleReconnect(this.backoff.next());
      }
    }
  }

  private channelsChanged(): void {
    if (this.mode === "poll" && this.st === "polling") {
      // Restart the pending long-poll so it carries the new channel set.
      this.poll.stop();
      this.pollOnce();
      return;
    }
    if (this.flushQueued) return;
    this.flushQueued = true;
    // Coalesce the subscribe/unsubscribe calls of one tick (e.g. a React render) into one frame each.
    queueMicrotask(() => {
      this.flushQueued = false;
      this.subs.flush();
    });
  }

  // ---- long-polling ----

  /** switchToPoll moves to long-polling and probes the stream after probeAfterMs. */
  private switchToPoll(probeAfterMs: number, reason: string, cause: PollCause = "server"): void {
    this.probe.begin(cause);
    this.failures = 0;
    this.setTransport("poll", reason);
    this.enterPoll(probeAfterMs);
  }

  private enterPoll(probeAfterMs: number): void {
    this.mode = "poll";
    this.probe.schedule(probeAfterMs);
    this.startPolling();
  }

  private startPolling(): void {
    if (!this.network.online()) {
      this.setState("offline");
      return;
    }
    if (!this.probe.armed) this.probe.schedule(this.probe.intervalMs);
    this.setState("poll");
    this.pollOnce();
  }

  /**
   * probeStream tries the stream while polling; on welcome the client moves back. A probe
   * due in another state is dropped: after a token refresh (reconnecting), startPolling
   * schedules the next one.
   */
  private probeStream(): void {
    if (this.st !== "polling") return;
    if (this.stream.current) return; // already probing the stream
    this.poll.stop();
    this.openSocket(true);
  }

  private pollOnce(): void {
    const channels = this.channels;
    if (channels.length === 0) return; // nothing to ask for; subscribe() restarts polling
    if (!this.poll.available) {
      this.emitter.emit("error", { kind: "poll", message: "no fetch implementation; going back to the stream" });
      this.backToStream();
      return;
    }
    const query = { url: pollBaseUrl(this.opts.url, this.opts.pollUrl), channels, cursor: this.subs.cursor.query(), token: this.token };
    this.poll.request(query, (r) => {
      if (this.st === "polling") this.onPollResult(r);
    });
  }

  private schedulePoll(delayMs: number): void {
    this.poll.after(delayMs, () => {
      if (this.st === "polling") this.pollOnce();
    });
  }

  private onPollResult(r: PollResult): void {
    switch (r.kind) {
      case "answer":
        return this.onPoll(r.body, r.channels, r.started);
      case "refused":
        return this.pollFailed(r.status, r.hintMs);
      case "failed":
        this.emitter.emit("error", { kind: "poll", message: `poll failed: ${String(r.error)}`, cause: r.error });
        return this.schedulePoll(this.backoff.next());
    }
  }

  private pollFailed(status: number, hintMs: number): void {
    const action = httpAction(status);
    this.emitter.emit("error", { kind: "poll", code: String(status), message: `poll answered HTTP ${status}` });
    switch (action) {
      case "unsupported":
        return this.backToStream();
      case "stop":
        return this.finish({ code: CloseCode.BadRequest, reason: `poll HTTP ${status}`, byApp: false });
      case "refresh-token":
        return this.refreshThen(() => this.startPolling(), { code: CloseCode.Unauthorized, reason: `poll HTTP ${status}` });
      case "retry-after":
        return this.schedulePoll(this.retryAfterDelay(hintMs));
      default:
        return this.schedulePoll(this.backoff.next());
    }
  }

  /** backToStream leaves polling (endpoint missing, or server says streaming is allowed). */
  private backToStream(): void {
    this.probe.clear();
    this.poll.stop();
    // A probe still connecting (polling restarted while it was opening) would otherwise
    // outlive the switch: welcomed in reconnecting, or replaced by the next attempt unclosed.
    this.stream.retireCurrent(CloseCode.Normal, "back to the stream");
    this.setTransport("stream", "poll unavailable");
    this.scheduleReconnect(this.backoff.next());
  }

  private onPoll(body: PollResponse, channels: string[], started: number): void {
    this.backoff.reset();
    const receivedAt = this.now();
    this.monitor.lastMessageAt = receivedAt;
    const count = this.subs.applyPoll(body, channels, receivedAt);
    this.healthChanged();
    // The server's transport advice is about the flag. A client polling because the stream
    // failed on its way (a proxy that blocks WebSockets) keeps its own probe schedule: a
    // probe after every poll would fail every time.
    if (body.transport === "stream" && this.probe.followsServer) {
      // Streaming is allowed again: probe now.
      this.probeStream();
      return;
    }
    if (typeof body.retryMs === "number" && body.retryMs > 0 && this.probe.followsServer) this.probe.schedule(body.retryMs, true);
    const quick = receivedAt - started < 1000;
    this.schedulePoll(count === 0 && quick ? (this.opts.pollIdleDelayMs ?? 1000) : 0);
  }
}
