// Typed channels: a channel name that carries its payload type, so that subscribe and
// useChannel hand the handler events whose data has that type. The helpers that make
// them are generated from the Go declaration of the channel families (docs/client.md
// "Typed channels"); typedChannel is what they call.
import type { RealtimeEvent } from "./types.js";

declare const payloadType: unique symbol;

/**
 * TypedChannel is a channel name (a string at run time) whose events carry payloads of
 * type T. Make them with the generated helpers (`orders("42")`), not by hand.
 */
export type TypedChannel<T> = string & { readonly [payloadType]: T };

/** TypedEvent is an event of a typed channel: its data is the channel's payload type. */
export interface TypedEvent<T> extends RealtimeEvent<T> {
  data: T;
}

/** TypedEventHandler receives the events of a typed channel. */
export type TypedEventHandler<T> = (event: TypedEvent<T>) => void;

/** A parameter value: channel characters without "." and ":" (as the Go side checks). */
const PARAM = /^[A-Za-z0-9_@=-]+$/;
const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*)\}/g;
const MAX_CHANNEL_LENGTH = 128;

/**
 * typedChannel fills the {param} placeholders of pattern with values, in order, and
 * returns the channel typed with T. It throws a TypeError on a wrong number of values,
 * a value that is not 1 or more of A-Z a-z 0-9 _ - @ = (no dot, no colon: a value
 * never adds a part to the name), or a name over 128 bytes.
 */
export function typedChannel<T>(pattern: string, values: readonly string[]): TypedChannel<T> {
  let i = 0;
  const name = pattern.replace(PLACEHOLDER, (_m, param: string) => {
    if (i >= values.length) throw new TypeError(`${pattern}: no value for {${param}}`);
    const v = values[i++];
    if (typeof v !== "string" || !PARAM.test(v)) {
      throw new TypeError(`${pattern}: {${param}} = ${JSON.stringify(v)}: want 1 or more of A-Z a-z 0-9 _ - @ =`);
    }
    return v;
  });
  if (i !== values.length) throw new TypeError(`${pattern}: ${values.length} values for ${i} parameters`);
  if (name.length > MAX_CHANNEL_LENGTH) throw new TypeError(`${pattern}: channel name over ${MAX_CHANNEL_LENGTH} bytes`);
  return name as TypedChannel<T>;
}
