// The client's connection state machine: its states, the events that move it, and the one
// table of legal transitions (docs/client.md "Connection states" shows the same table).

/** ConnectionState is the client's connection state (see docs/client.md). */
export type ConnectionState =
  | "idle"
  | "connecting"
  | "open"
  | "reconnecting"
  | "polling"
  | "offline"
  | "closed";

export const STATES: readonly ConnectionState[] = [
  "idle",
  "connecting",
  "open",
  "reconnecting",
  "polling",
  "offline",
  "closed",
];

/**
 * StateEvent is what moves the state machine. Each event leads to one state, whatever the
 * state it leaves (EVENT_TARGET); TRANSITIONS says in which states it may happen.
 *
 * - connect: a stream attempt starts (connect(), the reconnect timer, back online, reconnect())
 * - welcome: a stream connection (an attempt, or a probe while polling) got `welcome`
 * - retry: waiting before the next attempt (backoff, a retry hint, a token refresh, no poll endpoint)
 * - poll: long-polling starts or goes on (close 43xx, a transport frame, the breaker, a failed probe)
 * - offline: the browser is offline
 * - stop: close(), or an answer that says never to retry
 */
export type StateEvent = "connect" | "welcome" | "retry" | "poll" | "offline" | "stop";

export const STATE_EVENTS: readonly StateEvent[] = ["connect", "welcome", "retry", "poll", "offline", "stop"];

/** EVENT_TARGET is the state each event leads to. */
export const EVENT_TARGET: { readonly [E in StateEvent]: ConnectionState } = {
  connect: "connecting",
  welcome: "open",
  retry: "reconnecting",
  poll: "polling",
  offline: "offline",
  stop: "closed",
};

type Row = { readonly [E in StateEvent]?: ConnectionState };

/**
 * TRANSITIONS is the transition table, state x event -> state. A pair that is not in it
 * is a bug in the client (see StateMachine.fire). Entries that keep the state (polling x
 * poll, ...) are legal and change nothing.
 */
export const TRANSITIONS: { readonly [S in ConnectionState]: Row } = {
  // Created; connect() not called yet. A URL that cannot work stops at once.
  idle: { connect: "connecting", offline: "offline", stop: "closed" },
  // reconnect() while connecting starts a new attempt.
  connecting: {
    connect: "connecting",
    welcome: "open",
    retry: "reconnecting",
    poll: "polling",
    offline: "offline",
    stop: "closed",
  },
  open: { connect: "connecting", retry: "reconnecting", poll: "polling", offline: "offline", stop: "closed" },
  // The timer (or a refreshed token) starts the next attempt, or polling again; a failed
  // token refresh waits again.
  reconnecting: { connect: "connecting", retry: "reconnecting", poll: "polling", offline: "offline", stop: "closed" },
  // A probe's welcome moves back to the stream; a poll refused for a token waits in reconnecting.
  polling: { welcome: "open", retry: "reconnecting", poll: "polling", offline: "offline", stop: "closed" },
  // Back online: the transport of the current mode starts; still offline: nothing.
  offline: { connect: "connecting", poll: "polling", offline: "offline", stop: "closed" },
  // connect() again; in poll mode it polls, offline it waits. A bad URL stays closed.
  closed: { connect: "connecting", poll: "polling", offline: "offline", stop: "closed" },
};

/** nextState is the state ev leads to from state, or undefined if ev may not happen there. */
export function nextState(state: ConnectionState, ev: StateEvent): ConnectionState | undefined {
  return TRANSITIONS[state][ev];
}

/** IllegalTransitionError reports a state x event pair missing from TRANSITIONS. */
export class IllegalTransitionError extends Error {
  constructor(
    readonly state: ConnectionState,
    readonly event: StateEvent,
  ) {
    super(`RealtimeClient: illegal transition: ${event} in state ${state}`);
    this.name = "IllegalTransitionError";
  }
}

declare const process: { env: Record<string, string | undefined> };

/**
 * isDevelopment follows the bundler convention: true unless process.env.NODE_ENV is
 * "production". Bundlers replace `process.env.NODE_ENV` in the source; a page loading
 * the module without a bundler has no `process` and counts as production.
 */
export function isDevelopment(): boolean {
  try {
    return process.env.NODE_ENV !== "production";
  } catch {
    return false;
  }
}

/**
 * StateMachine holds the connection state and applies events through TRANSITIONS. An
 * illegal event throws IllegalTransitionError when strict (development and tests); in
 * production it is reported to onIllegal and the machine moves to the event's target
 * anyway, which is what the client did before the table existed.
 */
export class StateMachine {
  private current: ConnectionState = "idle";

  constructor(
    private readonly strict: boolean = isDevelopment(),
    private readonly onIllegal: (err: IllegalTransitionError) => void = (err) => console.error(err),
  ) {}

  get state(): ConnectionState {
    return this.current;
  }

  /** fire applies ev and returns the state before it (equal to state when nothing changed). */
  fire(ev: StateEvent): ConnectionState {
    const prev = this.current;
    let next = nextState(prev, ev);
    if (next === undefined) {
      const err = new IllegalTransitionError(prev, ev);
      if (this.strict) throw err;
      this.onIllegal(err);
      next = EVENT_TARGET[ev];
    }
    this.current = next;
    return prev;
  }
}
