// Presence and history (docs/protocol.md "Presence" and "History"): requests answered
// over the stream when it is open (a frame with an id, answered by a frame with the same
// id or an error frame), over HTTP otherwise; and live member lists that follow a
// channel's joins and leaves. The RealtimeClient owns one Requests and one PresenceBook.
import type { Cursor, ErrorFrame, RealtimeEvent } from "./types.js";
import { withQuery } from "./urls.js";

/** PresenceMember is one user in a channel and its connections (0: reconnecting). */
export interface PresenceMember {
  user: string;
  conns: number;
}

/** PresenceSnapshot is a channel's members across the cluster. */
export interface PresenceSnapshot {
  channel: string;
  /** At most the request's limit (default 100), sorted by user id. */
  members: PresenceMember[];
  /** Distinct users (anonymous connections excluded). */
  users: number;
  /** Every connection, anonymous ones included. */
  conns: number;
  anonymous?: number;
  /** members lists fewer than users. */
  truncated?: boolean;
  /** users may count a user connected to two instances twice (a very large channel). */
  approximate?: boolean;
}

/** PresenceFrame is the server's answer to a presence request. */
export interface PresenceFrame extends PresenceSnapshot {
  type: "presence";
  id?: string;
}

/** PresenceDiffFrame announces joins and leaves to connections that asked (subscribe with presence). */
export interface PresenceDiffFrame {
  type: "presence_diff";
  channel: string;
  joins?: string[];
  leaves?: string[];
}

/** HistoryOptions select history: the newest `limit` before `before` (or the head), or with `after` the oldest after it. */
export interface HistoryOptions {
  /** Events wanted (default 100, at most the server's maximum, 1000 by default). */
  limit?: number;
  /** Only events with seq < before. */
  before?: number;
  /** Only events with seq > after, oldest first. */
  after?: number;
  /** The epoch the seqs come from; a mismatch is refused (bad_cursor). */
  epoch?: string;
  /** Abort the request after this long, ms. Default 10000. */
  timeoutMs?: number;
}

/** HistoryResult is a channel's past events, in seq order. */
export interface HistoryResult {
  channel: string;
  events: RealtimeEvent[];
  /** The limit or the byte bound cut the answer: ask again before events[0].seq (or after the last). */
  more: boolean;
  epoch: string;
  /** Set when the answer reaches the head: a subscribe from it misses nothing. */
  cursor?: Cursor;
  /** "memory", "bus" or "mixed". */
  source: string;
}

/** HistoryFrame is the server's answer to a history request. */
export interface HistoryFrame extends HistoryResult {
  type: "history";
  id?: string;
}

/** RequestError is a refused presence or history request. */
export class RequestError extends Error {
  constructor(
    /** The protocol's code: forbidden, bad_channel, bad_cursor, unavailable, rate_limited, ... */
    readonly code: string,
    message: string,
    /** HTTP status when the request went over HTTP. */
    readonly status?: number,
  ) {
    super(message);
    this.name = "RequestError";
  }
}

/** RequestsHost is what Requests needs from the client. */
export interface RequestsHost {
  /** send writes a frame on the open stream; false when there is none. */
  send(frame: object): boolean;
  /** httpBase is the URL of an endpoint ("history", "presence") with the token. */
  httpUrl(endpoint: string, params: string[]): string;
  fetch: typeof fetch | undefined;
}

interface Pending {
  resolve: (v: any) => void;
  reject: (e: unknown) => void;
  timer: ReturnType<typeof setTimeout>;
  /** The same request over HTTP, for when the stream goes away first. */
  http: () => Promise<any>;
}

let requestIds = 0;

/**
 * Requests sends presence and history requests over the stream when it is open, and
 * over HTTP when it is not (or when the connection ends before the answer).
 */
export class Requests {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly host: RequestsHost) {}

  history(channel: string, o: HistoryOptions = {}): Promise<HistoryResult> {
    const fields: Record<string, unknown> = { channel };
    const params = ["channel=" + encodeURIComponent(channel)];
    for (const k of ["limit", "before", "after", "epoch"] as const) {
      const v = o[k];
      if (v !== undefined && v !== 0 && v !== "") {
        fields[k] = v;
        params.push(`${k}=${encodeURIComponent(String(v))}`);
      }
    }
    return this.request("history", fields, params, o.timeoutMs ?? 10000);
  }

  presence(channel: string, limit?: number, timeoutMs = 10000): Promise<PresenceSnapshot> {
    const fields: Record<string, unknown> = { channel };
    const params = ["channel=" + encodeURIComponent(channel)];
    if (limit && limit > 0) {
      fields.limit = limit;
      params.push("limit=" + limit);
    }
    return this.request("presence", fields, params, timeoutMs);
  }

  private request<T>(type: "history" | "presence", fields: Record<string, unknown>, params: string[], timeoutMs: number): Promise<T> {
    const http = () => this.overHttp<T>(type, params, timeoutMs);
    const id = `${type[0]}${++requestIds}`;
    return new Promise<T>((resolve, reject) => {
      if (!this.host.send({ type, id, ...fields })) {
        http().then(resolve, reject);
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RequestError("timeout", `${type} request timed out`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, http });
    });
  }

  private async overHttp<T>(endpoint: string, params: string[], timeoutMs: number): Promise<T> {
    const f = this.host.fetch ?? (globalThis as any).fetch;
    if (!f) throw new RequestError("unavailable", "no fetch implementation");
    const ctl = typeof AbortController !== "undefined" ? new AbortController() : null;
    const timer = setTimeout(() => ctl?.abort(), timeoutMs);
    try {
      const resp: Response = await f(this.host.httpUrl(endpoint, params), { signal: ctl?.signal, credentials: "same-origin" } as RequestInit);
      const body: any = await resp.json().catch(() => ({}));
      if (!resp.ok) throw new RequestError(body.code ?? String(resp.status), body.error ?? `HTTP ${resp.status}`, resp.status);
      return body as T;
    } finally {
      clearTimeout(timer);
    }
  }

  /** onAnswer settles the request a presence or history frame answers; false if none. */
  onAnswer(f: { id?: string }): boolean {
    const p = f.id ? this.pending.get(f.id) : undefined;
    if (!p) return false;
    this.pending.delete(f.id!);
    clearTimeout(p.timer);
    p.resolve(f);
    return true;
  }

  /** onError rejects the request an error frame answers; false if it answers none. */
  onError(f: ErrorFrame): boolean {
    const p = f.id ? this.pending.get(f.id) : undefined;
    if (!p) return false;
    this.pending.delete(f.id!);
    clearTimeout(p.timer);
    p.reject(new RequestError(f.code, f.message ?? f.code));
    return true;
  }

  /** detached sends the requests the ended connection did not answer over HTTP. */
  detached(): void {
    for (const [id, p] of this.pending) {
      this.pending.delete(id);
      clearTimeout(p.timer);
      p.http().then(p.resolve, p.reject);
    }
  }
}

/** PresenceState is a channel's live member list (PresenceBook.watch). */
export interface PresenceState {
  channel: string;
  /** Members by user id, with their connections as of the last snapshot (joins count 1). */
  members: Map<string, number>;
  /** Distinct users: from the last snapshot, moved by joins and leaves. */
  users: number;
  /** The first snapshot arrived. */
  ready: boolean;
  /** The snapshot listed fewer members than users (the list misses some). */
  truncated: boolean;
}

export type PresenceListener = (state: PresenceState) => void;

/** PresenceBookHost is what PresenceBook needs from the client. */
export interface PresenceBookHost {
  /** wantPresence asks for presence_diff frames of channel (subscribes it with presence); false: not any more. */
  wantPresence(channel: string, on: boolean): void;
  /** snapshot fetches a snapshot (over the stream when open, else HTTP). */
  snapshot(channel: string, limit: number): Promise<PresenceSnapshot>;
  /** polling reports whether events come by long-poll (no diffs: snapshots are polled). */
  polling(): boolean;
}

interface Watch {
  state: PresenceState;
  listeners: Set<PresenceListener>;
  /** Diffs apply only after the snapshot requested on the current connection arrived. */
  live: boolean;
  /** Generation of the snapshot request in flight: an older answer is dropped. */
  gen: number;
  poll: ReturnType<typeof setInterval> | null;
}

/**
 * PresenceBook keeps the live member lists of watched channels: the channel is
 * subscribed with presence, and after every (re)subscribe a snapshot is requested
 * behind it on the same connection; the server answers it in the order of the diffs,
 * so diffs before the answer are already in it and diffs after it apply on top. While
 * long-polling there are no diffs: snapshots are fetched every pollMs.
 */
export class PresenceBook {
  private readonly watches = new Map<string, Watch>();

  constructor(
    private readonly host: PresenceBookHost,
    private readonly opts: { limit: number; pollMs: number },
  ) {}

  /** watch calls fn with channel's member list on every change until the returned function is called. */
  watch(channel: string, fn: PresenceListener): () => void {
    let w = this.watches.get(channel);
    if (!w) {
      w = {
        state: { channel, members: new Map(), users: 0, ready: false, truncated: false },
        listeners: new Set(),
        live: false,
        gen: 0,
        poll: null,
      };
      this.watches.set(channel, w);
      this.host.wantPresence(channel, true);
      if (this.host.polling()) this.transportChanged();
    }
    w.listeners.add(fn);
    if (w.state.ready) fn(w.state);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      w!.listeners.delete(fn);
      if (w!.listeners.size > 0) return;
      if (w!.poll) clearInterval(w!.poll);
      this.watches.delete(channel);
      this.host.wantPresence(channel, false);
    };
  }

  /** channels lists the watched channels. */
  get channels(): string[] {
    return [...this.watches.keys()];
  }

  /** resubscribed: the channels were subscribed with presence on a connection; snapshots follow. */
  resubscribed(channels: string[]): void {
    for (const ch of channels) {
      const w = this.watches.get(ch);
      if (w) this.refresh(w);
    }
  }

  /** detached: the connection ended; diffs stop until the next snapshot. */
  detached(): void {
    for (const w of this.watches.values()) w.live = false;
  }

  /** transportChanged starts or stops the snapshot polling of the long-poll mode. */
  transportChanged(): void {
    const polling = this.host.polling();
    for (const w of this.watches.values()) {
      if (polling && !w.poll) {
        w.poll = setInterval(() => this.refresh(w), this.opts.pollMs);
        this.refresh(w);
      } else if (!polling && w.poll) {
        clearInterval(w.poll);
        w.poll = null;
      }
    }
  }

  private refresh(w: Watch): void {
    const gen = ++w.gen;
    w.live = false;
    this.host.snapshot(w.state.channel, this.opts.limit).then(
      (s) => {
        if (this.watches.get(w.state.channel) !== w || gen !== w.gen) return;
        w.state = {
          channel: w.state.channel,
          members: new Map(s.members.map((m) => [m.user, m.conns])),
          users: s.users,
          ready: true,
          truncated: !!s.truncated,
        };
        w.live = true;
        this.emit(w);
      },
      () => {
        // Refused or failed: the next (re)subscribe or poll tick asks again.
      },
    );
  }

  /** onDiff applies a presence_diff frame to its channel's list. */
  onDiff(f: PresenceDiffFrame): void {
    const w = this.watches.get(f.channel);
    if (!w || !w.live) return;
    const members = new Map(w.state.members);
    let users = w.state.users;
    for (const u of f.joins ?? []) {
      if (!members.has(u)) users++;
      members.set(u, Math.max(members.get(u) ?? 0, 1));
    }
    for (const u of f.leaves ?? []) {
      if (members.delete(u) || w.state.truncated) users = Math.max(0, users - 1);
    }
    w.state = { ...w.state, members, users };
    this.emit(w);
  }

  private emit(w: Watch): void {
    for (const fn of [...w.listeners]) fn(w.state);
  }
}

/** endpointUrl is the URL of /v2/realtime/<endpoint> next to a stream URL, with params. */
export function endpointUrl(streamUrl: string, endpoint: string, params: string[]): string {
  const base = streamUrl
    .replace(/^ws(s?):/, "http$1:")
    .replace(/\?.*$/, "")
    .replace(/\/stream$/, "/" + endpoint);
  return withQuery(base, params);
}
