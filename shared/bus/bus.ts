// The event-bus contract every service codes against. Two adapters implement it with the same
// observable behaviour: InProcessBus (embedded mode, one process) and NatsBus (NATS + JetStream).
// docs/bus.md describes the subjects and the delivery guarantees in prose.

import { type BusSchemas, isPersisted, isSubject, type Subject, validate } from './subjects.js';

export type { BusSchemas, Subject } from './subjects.js';

export interface DeliveryMeta {
  /**
   * Persisted subjects: the message's sequence number in the stream (shared by all persisted subjects,
   * increasing in publish order, stable across redeliveries and replays). Core subjects: a counter of
   * this subscription, from 1.
   */
  seq: number;
  /** True when this message was handed to a handler of this consumer before (a retry or a resume). */
  redelivered: boolean;
  /** 1 for the first delivery, 2 for the first redelivery, ... */
  attempt: number;
}

export type BusHandler<S extends Subject> = (msg: BusSchemas[S], meta: DeliveryMeta) => void | Promise<void>;

export interface SubscribeOptions<S extends Subject> {
  /**
   * Name of a durable consumer (letters, digits, `-`, `_`), e.g. `coordinator-<run>`. It is scoped to
   * the subject, so one name can be used for several subjects. A durable keeps its position across
   * unsubscribe, close and restarts: re-subscribing with the same name continues after the last
   * acknowledged message. Persisted subjects only.
   */
  durable?: string;
  /**
   * Where a new consumer starts: `'new'` (default) with messages published after subscribe()
   * resolves, `'all'` with the oldest message still retained. For a durable that already exists
   * this is ignored: it resumes where it was. Core subjects only support `'new'`.
   */
  deliver?: 'all' | 'new';
  /**
   * Client-side predicate; messages it rejects are acknowledged without calling the handler
   * (typically `m => m.run_id === runId`).
   */
  filter?: (msg: BusSchemas[S]) => boolean;
}

export interface Subscription {
  /**
   * Stops delivery. Resolves once the handler call in progress (and any message already received)
   * has been handled and acknowledged, so a durable re-subscribed afterwards neither loses nor
   * repeats them. Idempotent.
   */
  unsubscribe(): Promise<void>;
}

/** Whether a bus reaches its server now, and since when it has (or has not). */
export interface BusHealth {
  connected: boolean;
  /** When the connection last went up or down (ms since the epoch). */
  since: number;
}

export interface EventBus {
  /**
   * Validates `msg` against the subject's schema (throws a BusValidationError naming the field) and
   * sends it. For persisted subjects it resolves once the server (or the in-process log) stored it.
   */
  publish<S extends Subject>(subject: S, msg: BusSchemas[S]): Promise<void>;
  /**
   * Calls `handler` for each message, one at a time and in order, awaiting it. A message is
   * acknowledged after the handler resolves; if the handler throws, a persisted message is
   * redelivered after a backoff (later messages wait: order is kept) up to the redelivery policy's
   * attempt limit, then dropped with an error log; a core message is logged and dropped. Messages
   * that fail validation on receipt are logged and dropped. Resolves once the subscription is
   * active on the server: anything published after that is delivered.
   */
  subscribe<S extends Subject>(
    subject: S,
    handler: BusHandler<S>,
    opts?: SubscribeOptions<S>,
  ): Promise<Subscription>;
  /**
   * Drains: refuses new publishes and subscriptions, waits for publishes in flight, unsubscribes
   * every subscription (finishing the messages already received), then disconnects. Idempotent.
   */
  close(): Promise<void>;
  /**
   * Whether the bus is connected now; a bus that reconnects by itself reports the outage here so
   * that a service can show it (a run's status, a metric). Always connected in one process.
   */
  health?(): BusHealth;
}

/** The subset of shared/obs/log.ts's Logger the bus needs, so either a Logger or `console` fits. */
export interface BusLogger {
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export const stderrLogger: BusLogger = {
  warn: (msg, fields) => console.warn(`[bus] ${msg}`, fields ?? ''),
  error: (msg, fields) => console.error(`[bus] ${msg}`, fields ?? ''),
};

export interface RedeliveryPolicy {
  /** Delay before the first redelivery of a message whose handler threw. */
  delayMs: number;
  /** Cap of the exponential backoff (the delay doubles with each attempt). */
  maxDelayMs: number;
  /** Handler calls per message before it is dropped with an error log (a poison message must not stall the stream forever). */
  maxAttempts: number;
}

export const DEFAULT_REDELIVERY: RedeliveryPolicy = { delayMs: 500, maxDelayMs: 10_000, maxAttempts: 5 };

/** NATS' default max_payload; the in-process bus enforces it too so embedded runs catch oversized messages. */
export const DEFAULT_MAX_PAYLOAD = 1024 * 1024;

export interface BusOptions {
  /** Where dropped messages and handler failures are reported; default: stderr. */
  logger?: BusLogger;
  redelivery?: Partial<RedeliveryPolicy>;
}

export function redeliveryPolicy(p: Partial<RedeliveryPolicy> | undefined): RedeliveryPolicy {
  const r = { ...DEFAULT_REDELIVERY, ...p };
  if (
    !(r.delayMs >= 0) ||
    !(r.maxDelayMs >= r.delayMs) ||
    !Number.isInteger(r.maxAttempts) ||
    r.maxAttempts < 1
  ) {
    throw new Error(`invalid redelivery policy ${JSON.stringify(r)}`);
  }
  return r;
}

export function backoffMs(p: RedeliveryPolicy, attempt: number): number {
  return Math.min(p.maxDelayMs, p.delayMs * 2 ** Math.max(0, attempt - 1));
}

const DURABLE_NAME = /^[A-Za-z0-9_-]{1,128}$/;

/** Checks subscribe() arguments the same way for both adapters; returns the effective deliver policy. */
export function checkSubscribe<S extends Subject>(subject: S, opts: SubscribeOptions<S>): 'all' | 'new' {
  if (!isSubject(subject)) throw new Error(`subscribe: unknown subject ${JSON.stringify(subject)}`);
  const deliver = opts.deliver ?? 'new';
  if (deliver !== 'all' && deliver !== 'new')
    throw new Error(`subscribe ${subject}: deliver must be 'all' or 'new'`);
  if (opts.durable !== undefined && !DURABLE_NAME.test(opts.durable)) {
    throw new Error(
      `subscribe ${subject}: durable name ${JSON.stringify(opts.durable)} must be 1-128 letters, digits, '-' or '_'`,
    );
  }
  if (!isPersisted(subject)) {
    if (opts.durable !== undefined)
      throw new Error(`subscribe ${subject}: a core subject has no durable consumers`);
    if (deliver === 'all')
      throw new Error(`subscribe ${subject}: a core subject is not stored, so deliver 'all' is impossible`);
  }
  return deliver;
}

/** Validates (strictly) and serializes a message for publishing. */
export function encodeMessage<S extends Subject>(subject: S, msg: BusSchemas[S], maxPayload: number): string {
  if (!isSubject(subject)) throw new Error(`publish: unknown subject ${JSON.stringify(subject)}`);
  validate(subject, msg);
  const json = JSON.stringify(msg);
  const bytes = Buffer.byteLength(json);
  if (bytes > maxPayload) {
    throw new Error(
      `${subject}: message of ${bytes} bytes exceeds the max payload of ${maxPayload} bytes; send it in smaller chunks`,
    );
  }
  return json;
}
