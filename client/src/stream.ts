// The stream transport: one WebSocket to /v2/realtime/stream at a time, from the attempt
// to its close. It knows frames and timers, not the client's state: what a close means
// (reconnect, poll, stop) is decided by its host, the RealtimeClient.
import { CloseCode } from "./codes.js";
import type { ClientError } from "./events.js";
import { OPEN, type WebSocketCtor, type WebSocketLike } from "./socket.js";
import type { HealthReport, ServerFrame, WelcomeFrame } from "./types.js";

/** StreamOptions configures a StreamTransport. */
export interface StreamOptions {
  /** WebSocket implementation; default globalThis.WebSocket (looked up at each attempt). */
  WebSocket?: WebSocketCtor;
  now: () => number;
  /** An attempt must get `welcome` within this, ms. */
  connectTimeoutMs: number;
  /** Client ping interval after welcome, ms; 0 disables (one ping still follows welcome). */
  pingIntervalMs: number;
  /** Interval of the `health` frame, ms; 0 disables. */
  healthIntervalMs: number;
  /** Delay of the first `health` frame after welcome, ms (capped at the interval). */
  healthFirstMs: number;
}

/**
 * StreamHost receives what happens on the transport's current connection. Callbacks run
 * synchronously from the socket's events; none is called for a retired connection.
 */
export interface StreamHost {
  /** Any frame arrived (it proves the connection alive), at local time at. */
  traffic(at: number): void;
  /** The connection was welcomed; the host subscribes. Pings start after it returns, unless it retired conn. */
  welcome(conn: StreamConn, frame: WelcomeFrame): void;
  /** A frame after welcome other than welcome and pong (ping is answered already). */
  frame(conn: StreamConn, frame: ServerFrame): void;
  /** The answer to the client's ping: local send and receive times, the server's clock. */
  pong(sentAt: number, receivedAt: number, serverTime: number | undefined): void;
  /** A frame the client cannot use (not JSON, or before welcome); the connection goes on. */
  error(err: ClientError): void;
  /**
   * The connection ended: the server or the network closed it, or the transport gave up
   * (no welcome in time: code 4000; no frame for two heartbeats: 4001). It is retired.
   */
  closed(conn: StreamConn, code: number, reason: string): void;
  /** conn stopped being the current connection (retired, for any reason). */
  detached(conn: StreamConn): void;
  /** The body of the periodic `health` frame. */
  healthReport(): HealthReport;
}

/** StreamOpenError wraps what the WebSocket constructor threw (a URL that can never work). */
export class StreamOpenError extends Error {
  constructor(readonly cause: unknown) {
    super(String(cause));
    this.name = "StreamOpenError";
  }
}

/**
 * StreamConn is one connection attempt. Owned by its StreamTransport; the host reads it
 * and keeps it only to compare with the transport's current one.
 */
export class StreamConn {
  /** The welcome frame; null until the server sent it. */
  welcome: WelcomeFrame | null = null;
  /** Local time of the welcome (0 before). */
  welcomedAt = 0;
  /** Timeouts and intervals of this connection, cleared when it is retired. */
  timers: ReturnType<typeof setTimeout>[] = [];
  deadTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    readonly ws: WebSocketLike,
    /** Local time the attempt started. */
    readonly openedAt: number,
    /** Opened while polling, to see whether the stream works again (the state stays polling). */
    readonly probe: boolean,
  ) {}

  /** probing is true for a probe not welcomed yet: its close keeps the client polling. */
  get probing(): boolean {
    return this.probe && this.welcome === null;
  }
}

/**
 * StreamTransport opens, watches and closes the client's WebSocket, one at a time. It
 * gives up on an attempt without `welcome` within connectTimeoutMs and on a connection
 * silent for two heartbeat intervals, answers server pings, sends the client's pings and
 * health frames, and hands every other frame to its host. Not safe for concurrent use
 * (nothing in a page is).
 */
export class StreamTransport {
  private conn: StreamConn | null = null;

  constructor(
    private readonly opts: StreamOptions,
    private readonly host: StreamHost,
  ) {}

  /** current is the connection in use (attempt, probe or welcomed), or null. */
  get current(): StreamConn | null {
    return this.conn;
  }

  /**
   * open starts an attempt to url() and makes it current (retiring a current one). It throws StreamOpenError if
   * the WebSocket constructor (or url) throws, and Error if there is no WebSocket at all.
   */
  open(url: () => string, probe: boolean): StreamConn {
    const Ctor = this.opts.WebSocket ?? (globalThis as any).WebSocket;
    if (!Ctor) throw new Error("RealtimeClient: no WebSocket implementation (pass options.WebSocket)");
    let ws: WebSocketLike;
    try {
      ws = new Ctor(url());
    } catch (err) {
      throw new StreamOpenError(err);
    }
    // One connection at a time: a previous one still current is retired, not leaked.
    if (this.conn) this.retire(this.conn, CloseCode.Normal, "replaced");
    const conn = new StreamConn(ws, this.opts.now(), probe);
    this.conn = conn;
    ws.onmessage = (ev) => this.onMessage(conn, ev.data);
    ws.onclose = (ev) => this.onClose(conn, ev.code, ev.reason);
    ws.onerror = () => {}; // a close event always follows
    conn.timers.push(
      setTimeout(() => {
        if (this.conn === conn && !conn.welcome) this.lost(conn, CloseCode.Reconnect, "connect timeout");
      }, this.opts.connectTimeoutMs),
    );
    return conn;
  }

  /**
   * send writes frame on the current connection if it is welcomed and open; it reports
   * whether the frame went out.
   */
  send(frame: object): boolean {
    const conn = this.conn;
    if (!conn || !conn.welcome || conn.ws.readyState !== OPEN) return false;
    try {
      conn.ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  /** retire closes the current connection, if any; its events are ignored from now on. */
  retireCurrent(code: number, reason: string): void {
    if (this.conn) this.retire(this.conn, code, reason);
  }

  /** retire detaches conn's handlers and closes it; its close event is then ignored. */
  retire(conn: StreamConn, code: number, reason: string): void {
    for (const t of conn.timers) clearTimeout(t);
    conn.timers = [];
    if (conn.deadTimer !== null) clearTimeout(conn.deadTimer);
    conn.deadTimer = null;
    conn.ws.onmessage = null;
    conn.ws.onclose = null;
    conn.ws.onopen = null;
    conn.ws.onerror = null;
    if (conn.ws.readyState < 2) {
      // Browsers accept only 1000 and 3000-4999 from applications, and a short reason.
      const c = code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000;
      try {
        conn.ws.close(c, reason.slice(0, 60));
      } catch {
        // closing already
      }
    }
    if (this.conn === conn) {
      this.conn = null;
      this.host.detached(conn);
    }
  }

  /** lost ends conn locally (dead or stuck connection) and reports it like a close. */
  private lost(conn: StreamConn, code: number, reason: string): void {
    this.retire(conn, 4000, reason);
    this.host.closed(conn, code, reason);
  }

  private onClose(conn: StreamConn, code: number, reason: string): void {
    if (this.conn !== conn) return;
    this.retire(conn, code, reason);
    this.host.closed(conn, code, reason);
  }

  private onMessage(conn: StreamConn, data: unknown): void {
    if (this.conn !== conn) return;
    this.host.traffic(this.opts.now());
    this.armDeadTimer(conn);
    let frame: ServerFrame;
    try {
      frame = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      this.host.error({ kind: "protocol", message: "frame is not JSON" });
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (!conn.welcome && frame.type !== "welcome") {
      this.host.error({ kind: "protocol", message: `frame ${frame.type} before welcome` });
      return;
    }
    switch (frame.type) {
      case "welcome":
        return this.onWelcome(conn, frame);
      case "ping":
        this.send({ type: "pong", ts: frame.ts });
        return this.host.frame(conn, frame);
      case "pong":
        if (typeof frame.ts === "number") this.host.pong(frame.ts, this.opts.now(), frame.serverTime);
        return;
      default:
        return this.host.frame(conn, frame);
    }
  }

  private armDeadTimer(conn: StreamConn): void {
    const hb = conn.welcome?.heartbeatMs ?? 0;
    if (hb <= 0) return;
    if (conn.deadTimer !== null) clearTimeout(conn.deadTimer);
    conn.deadTimer = setTimeout(() => {
      if (this.conn === conn) this.lost(conn, CloseCode.Heartbeat, "no frame for two heartbeat intervals");
    }, 2 * hb);
  }

  private onWelcome(conn: StreamConn, w: WelcomeFrame): void {
    if (conn.welcome) return;
    conn.welcome = w;
    conn.welcomedAt = this.opts.now();
    for (const t of conn.timers) clearTimeout(t);
    conn.timers = [];
    this.armDeadTimer(conn);
    this.host.welcome(conn, w);
    // The host (or an app listener it called) may have retired conn meanwhile: close(),
    // reconnect(), going offline. Its intervals would then run for good.
    if (this.conn !== conn) return;
    this.ping();
    const pingEvery = this.opts.pingIntervalMs;
    if (pingEvery > 0) conn.timers.push(setInterval(() => this.ping(), pingEvery));
    const healthEvery = this.opts.healthIntervalMs;
    if (healthEvery > 0) {
      // A first report soon after welcome (once the first pong measured the round trip),
      // so the fleet's figures include a tab within seconds, then one per interval.
      const report = () => this.send({ type: "health", health: this.host.healthReport() });
      conn.timers.push(setTimeout(report, Math.min(Math.max(0, this.opts.healthFirstMs), healthEvery)));
      conn.timers.push(setInterval(report, healthEvery));
    }
  }

  private ping(): void {
    this.send({ type: "ping", ts: this.opts.now() });
  }
}
