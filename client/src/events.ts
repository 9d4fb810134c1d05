// The events a RealtimeClient emits (RealtimeClient.on) and the handler type of subscribe.
import type { HealthSnapshot } from "./health.js";
import type { ConnectionState } from "./state.js";
import type { RealtimeEvent, Transport, WelcomeFrame } from "./types.js";

/** ResyncInfo tells the app that events may have been missed: reload state from its source of truth. */
export interface ResyncInfo {
  /** Server's reason: epoch_mismatch, too_old, cursor_ahead, unavailable, cursor_after_live_subscribe. */
  reason: string;
  /** Channels whose events may be missing. */
  channels: string[];
  /** Epoch the client continues with. */
  epoch: string;
}

/** ClientError is reported through the "error" event; the connection goes on. */
export interface ClientError {
  kind: "channel" | "frame" | "handler" | "token" | "poll" | "protocol";
  message: string;
  code?: string;
  channel?: string;
  cause?: unknown;
}

/** CloseInfo describes why the client reached the "closed" state. */
export interface CloseInfo {
  code: number;
  reason: string;
  /** True when the app called close(). */
  byApp: boolean;
}

/** ClientEvents lists the events of RealtimeClient.on. */
export interface ClientEvents {
  /** The connection state changed. */
  state: (state: ConnectionState, prev: ConnectionState) => void;
  /** A resume was answered recovered:false: resync app state for these channels. */
  resync: (info: ResyncInfo) => void;
  /** The health snapshot changed (throttled to healthEmitMs for event traffic). */
  health: (snapshot: HealthSnapshot) => void;
  /** The transport changed between "stream" and "poll". */
  transport: (transport: Transport, reason: string) => void;
  /** The server confirmed these channels (a subscribe answer; also after every reconnect). */
  subscribed: (channels: string[]) => void;
  /** A stream connection was welcomed. */
  welcome: (frame: WelcomeFrame) => void;
  /** Something went wrong that the client handled (refused channel, error frame, throwing handler). */
  error: (err: ClientError) => void;
  /** The client stopped for good (close() or a do-not-reconnect code). */
  closed: (info: CloseInfo) => void;
}

/** EventHandler receives the events of one channel, in seq order, without duplicates. */
export type EventHandler<T = unknown> = (event: RealtimeEvent<T>) => void;
