// Close codes of the realtime stream and what a client does after each.
//
// This file mirrors realtime/protocol/close.go and the "Close codes" table of
// docs/protocol.md. When they disagree, one of them has a bug: fix it on both sides.
//
//   4000-4099  reconnect with backoff (exponential, full jitter, capped)
//   4100-4199  reconnect after the delay in the close reason ("retry=<ms>"), resume by cursor
//   4200-4299  get a fresh token, then reconnect
//   4300-4399  switch to long-polling; probe the stream again after "retry=<ms>"
//   4400-4499  do not reconnect (the request can never succeed as it is)
//
// Standard codes: 1000 normal (do not reconnect), 1001 going away (backoff), 1009 message
// too big (do not reconnect), 1011 internal error (backoff), 1006 abnormal (backoff).

/** Close codes, named as in realtime/protocol/close.go. */
export const CloseCode = {
  Normal: 1000,
  GoingAway: 1001,
  Abnormal: 1006,
  TooBig: 1009,
  Internal: 1011,
  Reconnect: 4000,
  Heartbeat: 4001,
  Slow: 4100,
  Shutdown: 4101,
  RateLimited: 4102,
  Overloaded: 4103,
  TooMany: 4104,
  QueueBudget: 4105,
  TokenExpired: 4200,
  UsePoll: 4300,
  BadRequest: 4400,
  Unauthorized: 4401,
  Forbidden: 4403,
} as const;

export type CloseCodeName = keyof typeof CloseCode;

/** What a client must do after a close. Same names as protocol.Action.String(). */
export type CloseAction = "backoff" | "retry-after" | "refresh-token" | "use-poll" | "stop";

/** actionFor maps a close code to the client's next action (protocol.ActionFor). */
export function actionFor(code: number): CloseAction {
  if (code >= 4000 && code < 4100) return "backoff";
  if (code >= 4100 && code < 4200) return "retry-after";
  if (code >= 4200 && code < 4300) return "refresh-token";
  if (code >= 4300 && code < 4400) return "use-poll";
  if (code >= 4400 && code < 5000) return "stop";
  switch (code) {
    case 1000: // normal: the app (or server, on purpose) closed it
    case 1002: // protocol error
    case 1003: // unsupported data
    case 1007: // invalid payload
    case 1008: // policy violation
    case 1009: // message too big: a client bug
      return "stop";
    default: // 1001, 1006, 1011, 1012, 1013 and unknown
      return "backoff";
  }
}

/**
 * retryHint extracts "retry=<ms>" from a close reason (the last occurrence, as
 * protocol.RetryHint does); 0 if absent or malformed.
 */
export function retryHint(reason: string | undefined | null): number {
  if (!reason) return 0;
  const i = reason.lastIndexOf("retry=");
  if (i < 0) return 0;
  let s = reason.slice(i + "retry=".length);
  const j = s.indexOf(" ");
  if (j >= 0) s = s.slice(0, j);
  if (!/^[+]?\d+$/.test(s)) return 0;
  const n = Number(s);
  return Number.isSafeInteger(n) && n >= 0 ? n : 0;
}

/**
 * httpAction maps an HTTP status of a poll request (or a refused upgrade) to the same
 * actions as close codes, per docs/protocol.md: 401 needs a new token, 403 and other
 * 4xx never succeed by retrying, 429 and 503 retry after Retry-After, other 5xx back off.
 * 404, 405 and 501 mean "no long-polling endpoint here": the caller goes back to the stream.
 */
export function httpAction(status: number): CloseAction | "unsupported" {
  if (status === 401) return "refresh-token";
  if (status === 404 || status === 405 || status === 501) return "unsupported";
  if (status === 408 || status === 425) return "backoff";
  if (status === 429 || status === 503) return "retry-after";
  if (status >= 400 && status < 500) return "stop";
  return "backoff";
}
