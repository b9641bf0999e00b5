// Errors a gRPC client can act on, and the handler wrappers that turn whatever a service throws into
// a status. The status codes and what a client should do about each: docs/rpc.md.
//
// Server side: throw `invalidArgument('run.config_json', 'does not parse: ...')`,
// `failedPrecondition(...)`, `unavailable('learner', ...)`, ... from a handler wrapped in
// `handleUnary` / `handleServerStream`; anything else thrown becomes INTERNAL (and is logged).
// Client side: `isRetryable(err, {idempotent})`, `errorField(err)`.
import { once } from 'node:events';
import {
  type Deadline,
  type handleServerStreamingCall,
  type handleUnaryCall,
  Metadata,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceError,
  status as Status,
} from '@grpc/grpc-js';

import { encodeStatusDetails, STATUS_DETAILS_KEY, type StatusDetails } from './status-details.js';

export { Status };

/** Trailing-metadata key naming the request field an INVALID_ARGUMENT is about (snake_case proto path). */
export const FIELD_KEY = 'rmt-field';
/** Trailing-metadata key naming the dependency an UNAVAILABLE is about (e.g. "learner"). */
export const DEPENDENCY_KEY = 'rmt-dependency';

/**
 * Longest status message sent: messages quote a client's values, and a client's value can be
 * megabytes (the message then ends with how long it was).
 */
export const MAX_DETAILS_CHARS = 1024;

const cut = (s: string) =>
  s.length > MAX_DETAILS_CHARS ? `${s.slice(0, MAX_DETAILS_CHARS)}... (${s.length} chars)` : s;

/** An error with a gRPC status; thrown by handlers, sent to the client as that status. */
export class RpcError extends Error {
  override readonly name = 'RpcError';
  readonly code: Status;
  /** The status message the client sees. */
  readonly details: string;
  /** Trailing metadata sent with the status. */
  readonly metadata: Metadata;

  constructor(
    code: Status,
    details: string,
    metadata: Record<string, string> = {},
    options?: { cause?: unknown },
  ) {
    super(`${Status[code]}: ${cut(details)}`, options);
    this.code = code;
    this.details = cut(details);
    this.metadata = new Metadata();
    for (const [k, v] of Object.entries(metadata)) this.metadata.set(k, v);
    this.metadata.set(
      STATUS_DETAILS_KEY,
      Buffer.from(encodeStatusDetails(richDetails(code, this.details, metadata))),
    );
  }
}

/** The standard details of a status: BadRequest for a named field, ErrorInfo always. */
function richDetails(code: Status, details: string, metadata: Record<string, string>): StatusDetails {
  const field = metadata[FIELD_KEY];
  const dependency = metadata[DEPENDENCY_KEY];
  if (field !== undefined) {
    const description = details.startsWith(`${field}: `) ? details.slice(field.length + 2) : details;
    return {
      code,
      message: details,
      fieldViolations: [{ field, description }],
      reason: 'INVALID_FIELD',
      metadata: { field },
    };
  }
  if (dependency !== undefined) {
    return { code, message: details, reason: 'DEPENDENCY_UNAVAILABLE', metadata: { dependency } };
  }
  return { code, message: details, reason: Status[code] ?? 'UNKNOWN', metadata: {} };
}

/** The request is wrong whatever the server's state: the client must change it. Names the field. */
export function invalidArgument(field: string, why: string): RpcError {
  return new RpcError(Status.INVALID_ARGUMENT, `${field}: ${why}`, { [FIELD_KEY]: field });
}

/** The server is not in a state to do this now (no InitRun yet, wrong step, a run already active). */
export function failedPrecondition(why: string): RpcError {
  return new RpcError(Status.FAILED_PRECONDITION, why);
}

/** A dependency (another service, the bus, a volume) cannot be reached; retrying later may work. */
export function unavailable(dep: string, why: string): RpcError {
  return new RpcError(Status.UNAVAILABLE, `${dep}: ${why}`, { [DEPENDENCY_KEY]: dep });
}

/** The named thing (a run, a worker, a checkpoint) does not exist. */
export function notFound(what: string, why = 'not found'): RpcError {
  return new RpcError(Status.NOT_FOUND, `${what}: ${why}`);
}

/** The work was stopped because the caller cancelled it. */
export function cancelled(why = 'cancelled by the client'): RpcError {
  return new RpcError(Status.CANCELLED, why);
}

/** The work was stopped because the call's deadline passed. */
export function deadlineExceeded(why = 'deadline exceeded'): RpcError {
  return new RpcError(Status.DEADLINE_EXCEEDED, why);
}

/** A bug or an unexpected library failure; the client cannot fix it by changing the request. */
export function internal(why: string, cause?: unknown): RpcError {
  return new RpcError(Status.INTERNAL, why, {}, { cause });
}

/** True for the error a grpc-js client call fails with (a status from the server or the channel). */
export function isServiceError(e: unknown): e is ServiceError {
  return (
    e instanceof Error &&
    typeof (e as Partial<ServiceError>).code === 'number' &&
    (e as Partial<ServiceError>).metadata instanceof Metadata
  );
}

/**
 * Any thrown value as an RpcError, ready to be sent as a status:
 * - an RpcError as it is;
 * - an AbortError (e.g. from `timers/promises` or `events.once` given the handler's signal) as its
 *   cause when that is an RpcError (the signal's reason: CANCELLED or DEADLINE_EXCEEDED), else CANCELLED;
 * - a failed call to another gRPC service: UNAVAILABLE, DEADLINE_EXCEEDED and CANCELLED keep their
 *   code (the client may retry / the time is up); any other code becomes INTERNAL, since the
 *   downstream's INVALID_ARGUMENT or NOT_FOUND is not about this client's request;
 * - anything else (library errors, bugs): INTERNAL with its message.
 */
export function toServiceError(e: unknown): RpcError {
  if (e instanceof RpcError) return e;
  if (e instanceof Error && e.name === 'AbortError') {
    return e.cause instanceof RpcError ? e.cause : cancelled(e.message);
  }
  if (isServiceError(e)) {
    const details = e.details || e.message;
    switch (e.code) {
      case Status.UNAVAILABLE:
      case Status.DEADLINE_EXCEEDED:
      case Status.CANCELLED:
        return new RpcError(e.code, `downstream call: ${details}`, {}, { cause: e });
      default:
        return internal(`downstream call failed with ${Status[e.code] ?? e.code}: ${details}`, e);
    }
  }
  if (e instanceof Error) return internal(e.message || e.name, e);
  return internal(String(e), e);
}

/**
 * Whether a failed client call may be retried as it is: UNAVAILABLE always (nothing was done, or the
 * server went away), DEADLINE_EXCEEDED only for idempotent calls (the server may have done the work).
 */
export function isRetryable(err: unknown, opts: { idempotent?: boolean } = {}): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (code === Status.UNAVAILABLE) return true;
  if (code === Status.DEADLINE_EXCEEDED) return opts.idempotent === true;
  return false;
}

/** The request field an INVALID_ARGUMENT names (from the `rmt-field` trailer), if any. */
export function errorField(err: unknown): string | undefined {
  const md = (err as { metadata?: unknown } | null)?.metadata;
  if (!(md instanceof Metadata)) return undefined;
  const v = md.get(FIELD_KEY)[0];
  return v === undefined ? undefined : String(v);
}

/** What a wrapped handler gets besides the request. */
export interface CallContext {
  /** Aborts when the client cancels (or goes away) and when the call's deadline passes; its reason
   * is an RpcError (CANCELLED or DEADLINE_EXCEEDED). Pass it to long work so that work stops. */
  signal: AbortSignal;
  /** The request metadata. */
  metadata: Metadata;
  /** The call's deadline in ms since the epoch (Infinity without one). */
  deadline: number;
  /** The client's address. */
  peer: string;
  /** The full method name, e.g. "/rmt.v1.ScorerService/Tokenize". */
  method: string;
}

export interface HandlerOptions {
  /** Where INTERNAL errors (with stack) are logged; console.error by default. */
  log?: (line: string) => void;
}

type AnyServerCall = ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>;

const MAX_TIMER_MS = 2 ** 31 - 1;
/** A cancellation this close to the deadline counts as the deadline passing. */
const DEADLINE_SLACK_MS = 50;

function deadlineMs(d: Deadline): number {
  return d instanceof Date ? d.getTime() : d;
}

function callContext(call: AnyServerCall): { ctx: CallContext; done: () => void } {
  const controller = new AbortController();
  const deadline = deadlineMs(call.getDeadline());
  // grpc-js reports a call ended by its deadline as 'cancelled' too (its own deadline timer, or the
  // client's RST_STREAM arriving about when the deadline passes here): tell the two apart by time.
  const onCancel = () => {
    if (controller.signal.aborted) return;
    controller.abort(Date.now() >= deadline - DEADLINE_SLACK_MS ? deadlineExceeded() : cancelled());
  };
  call.on('cancelled', onCancel);
  let timer: NodeJS.Timeout | undefined;
  if (Number.isFinite(deadline)) {
    const arm = () => {
      const left = deadline - Date.now();
      if (left <= 0) {
        if (!controller.signal.aborted) controller.abort(deadlineExceeded());
        return;
      }
      timer = setTimeout(arm, Math.min(left, MAX_TIMER_MS));
      timer.unref();
    };
    arm();
  }
  if (call.cancelled) onCancel();
  const ctx: CallContext = {
    signal: controller.signal,
    metadata: call.metadata,
    deadline,
    peer: call.getPeer(),
    method: call.getPath(),
  };
  return {
    ctx,
    done: () => {
      clearTimeout(timer);
      call.removeListener('cancelled', onCancel);
    },
  };
}

function report(e: unknown, method: string, opts: HandlerOptions): RpcError {
  const err = toServiceError(e);
  if (err.code === Status.INTERNAL || err.code === Status.UNKNOWN) {
    const log = opts.log ?? ((line: string) => console.error(line));
    const cause = err.cause instanceof Error ? err.cause : err;
    log(`${method}: ${Status[err.code]}: ${cause.stack ?? cause.message}`);
  }
  return err;
}

/**
 * A unary handler from an async function: its result is the response, what it throws becomes the
 * status (see toServiceError).
 */
export function handleUnary<Req, Res>(
  impl: (req: Req, ctx: CallContext) => Promise<Res> | Res,
  opts: HandlerOptions = {},
): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    const { ctx, done } = callContext(call as AnyServerCall);
    Promise.resolve()
      .then(() => impl(call.request, ctx))
      .then(
        (res) => {
          done();
          callback(null, res);
        },
        (e: unknown) => {
          done();
          callback(report(e, ctx.method, opts));
        },
      );
  };
}

/**
 * A server-streaming handler from an async iterable (typically an async generator): each value is
 * sent as one message (waiting while the client is slow to read), the stream ends OK when the
 * iterable ends, and what it throws becomes the status. When the call is cancelled or its deadline
 * passes, the wrapper stops pulling values (the generator's `finally` runs at its next `yield`) and
 * `ctx.signal` aborts so that work in progress can stop earlier.
 */
export function handleServerStream<Req, Res>(
  impl: (req: Req, ctx: CallContext) => AsyncIterable<Res> | Iterable<Res>,
  opts: HandlerOptions = {},
): handleServerStreamingCall<Req, Res> {
  return (call) => {
    const { ctx, done } = callContext(call as AnyServerCall);
    const run = async () => {
      for await (const msg of impl(call.request, ctx)) {
        if (ctx.signal.aborted) break;
        if (!call.write(msg)) await once(call, 'drain', { signal: ctx.signal });
      }
      if (ctx.signal.aborted) throw ctx.signal.reason;
    };
    run().then(
      () => {
        done();
        call.end();
      },
      (e: unknown) => {
        done();
        call.emit('error', report(e, ctx.method, opts));
      },
    );
  };
}
