// Close codes of the realtime stream and what a client does after each.
//
// The table itself (CloseCode, the action of every code) is generated from
// realtime/protocol/close.go into codes.gen.ts (go generate ./cmd/tscodes); this file
// adds the lookups. docs/protocol.md "Close codes" describes the same table.
//
//   4000-4099  reconnect with backoff (exponential, full jitter, capped)
//   4100-4199  reconnect after the delay in the close reason ("retry=<ms>"), resume by cursor
//   4200-4299  get a fresh token, then reconnect
//   4300-4399  switch to long-polling; probe the stream again after "retry=<ms>"
//   4400-4499  do not reconnect (the request can never succeed as it is)
//
// Standard codes: 1000 normal (do not reconnect), 1001 going away (backoff), 1009 message
// too big (do not reconnect), 1011 internal error (backoff), 1006 abnormal (backoff).
import { CLOSE_ACTIONS, CloseCode, DEFAULT_CLOSE_ACTION, type CloseAction } from "./codes.gen.js";

export { CLOSE_ACTIONS, CloseCode, DEFAULT_CLOSE_ACTION, type CloseAction };

export type CloseCodeName = keyof typeof CloseCode;

/** actionFor maps a close code to the client's next action (protocol.ActionFor, through CLOSE_ACTIONS). */
export function actionFor(code: number): CloseAction {
  for (const [first, last, action] of CLOSE_ACTIONS) {
    if (code < first) break;
    if (code <= last) return action;
  }
  return DEFAULT_CLOSE_ACTION;
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
