/**
 * A request the library refuses, with what a caller can do about it: `argument` (change the
 * request; `field` names what is wrong), `precondition` (the state does not allow it now),
 * `conflict` (the request repeats an id already used for something else), `busy` (held by someone
 * else for a while that ends by itself: retry with a backoff). The gRPC adapters turn these into
 * INVALID_ARGUMENT, FAILED_PRECONDITION, ALREADY_EXISTS and UNAVAILABLE; the embedded run shows the
 * message.
 */
export type RequestErrorKind = 'argument' | 'precondition' | 'conflict' | 'busy';

export class RequestError extends Error {
  constructor(
    message: string,
    readonly kind: RequestErrorKind,
    /** The request field an `argument` error is about (snake_case proto path where there is one). */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

/** Longest part of a caller's value an error message repeats: a huge value must not travel back. */
export const ECHO_CHARS = 200;

/** A caller's value as an error message may quote it: JSON, cut to ECHO_CHARS. */
export function echo(value: unknown, max = ECHO_CHARS): string {
  let s: string;
  try {
    s = typeof value === 'string' ? JSON.stringify(value) : String(JSON.stringify(value) ?? value);
  } catch {
    s = String(value);
  }
  return s.length > max ? `${s.slice(0, max)}... (${s.length} chars)` : s;
}
