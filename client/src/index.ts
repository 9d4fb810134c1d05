// @encore-realtime/client: browser client for the Encore realtime stream.
// See docs/client.md for usage, states and close-code handling.
export { RealtimeClient } from "./client.js";
export type {
  RealtimeClientOptions,
  ResyncInfo,
  ClientError,
  CloseInfo,
  ClientEvents,
  EventHandler,
} from "./client.js";
export { typedChannel } from "./typed.js";
export type { TypedChannel, TypedEvent, TypedEventHandler } from "./typed.js";
export { Backoff, DEFAULT_BACKOFF } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export { Dedup } from "./dedup.js";
export type { DedupOptions } from "./dedup.js";
export { HealthMonitor } from "./health.js";
export type { HealthSnapshot } from "./health.js";
export { STATES, STATE_EVENTS, TRANSITIONS, EVENT_TARGET, nextState, IllegalTransitionError } from "./state.js";
export type { ConnectionState, StateEvent } from "./state.js";
export { CloseCode, actionFor, retryHint, httpAction } from "./codes.js";
export type { CloseAction, CloseCodeName } from "./codes.js";
export { browserNetwork } from "./socket.js";
export type { WebSocketLike, WebSocketCtor, NetworkMonitor } from "./socket.js";
export type {
  RealtimeEvent,
  Cursor,
  Recovery,
  ChannelResult,
  Limits,
  WelcomeFrame,
  SubscribedFrame,
  EventsFrame,
  TransportFrame,
  ErrorFrame,
  ServerFrame,
  HealthReport,
  PollResponse,
  Transport,
} from "./types.js";
