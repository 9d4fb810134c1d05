// Wire types of docs/protocol.md (realtime/protocol/frames.go). Unknown fields are
// ignored, so these list only what the client reads or sends.

/** RealtimeEvent is one published event as clients see it. */
export interface RealtimeEvent<T = unknown> {
  /** Publisher's ID; the client drops a second event with the same ID. */
  id: string;
  /** Bus sequence: one total order over all channels, with gaps. */
  seq: number;
  channel: string;
  type?: string;
  /** The publisher's JSON, verbatim. */
  data?: T;
  /** Publish time on the server, unix ms. */
  ts: number;
}

/** Cursor is the highest seq processed and the epoch of the stream it belongs to. */
export interface Cursor {
  seq: number;
  epoch: string;
}

/** Recovery is the server's answer to a subscribe (or poll) that carried a cursor. */
export interface Recovery {
  recovered: boolean;
  reason?: string;
  from?: number;
  to?: number;
  source?: string;
}

export interface ChannelResult {
  channel: string;
  ok: boolean;
  code?: string;
  error?: string;
}

export interface Limits {
  maxFrameBytes?: number;
  maxSubscriptions?: number;
  maxChannelLength?: number;
  maxBatchEvents?: number;
}

export interface WelcomeFrame {
  type: "welcome";
  version: number;
  session: string;
  instance: string;
  heartbeatMs: number;
  serverTime: number;
  epoch: string;
  seq: number;
  flags?: Record<string, boolean>;
  limits?: Limits;
}

export interface SubscribedFrame {
  type: "subscribed";
  id?: string;
  op: "subscribe" | "unsubscribe";
  results: ChannelResult[];
  recovery?: Recovery;
  epoch?: string;
}

export interface EventsFrame {
  type: "events";
  events: RealtimeEvent[];
}

export interface PingFrame {
  type: "ping";
  ts: number;
  /**
   * The head the server ping was written at (absent from older servers): every event of the
   * connection's channels with a seq up to it arrived before the ping (docs/protocol.md
   * "Fresh cursors on quiet channels").
   */
  seq?: number;
  epoch?: string;
}

export interface PongFrame {
  type: "pong";
  ts: number;
  serverTime?: number;
}

export interface TransportFrame {
  type: "transport";
  transport: "poll" | "stream";
  retryMs?: number;
  reason?: string;
}

export interface ErrorFrame {
  type: "error";
  id?: string;
  code: string;
  message: string;
}

export type ServerFrame =
  | WelcomeFrame
  | SubscribedFrame
  | EventsFrame
  | PingFrame
  | PongFrame
  | TransportFrame
  | ErrorFrame;

/** HealthReport is the body of the client's periodic `health` frame. */
export interface HealthReport {
  rttMs: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  clockOffsetMs: number;
  reconnects: number;
  recoveries: number;
  eventsReceived: number;
  duplicates: number;
  transport: Transport;
}

/**
 * PollResponse is the assumed answer of GET /v2/realtime/poll (the server side is
 * being written; see docs/client.md "Long-polling").
 */
export interface PollResponse {
  events?: RealtimeEvent[];
  cursor?: Cursor;
  recovery?: Recovery;
  transport?: Transport;
  retryMs?: number;
}

/** Transport is how events currently arrive. */
export type Transport = "stream" | "poll";
