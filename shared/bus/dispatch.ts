// What both adapters do with one received message: decode, validate, filter, call the handler, and
// decide between acknowledging, retrying and dropping. Keeping it in one place is what makes the
// in-process bus a faithful stand-in for NATS.

import { AsyncLocalStorage } from 'node:async_hooks';
import {
  type BusHandler,
  type BusLogger,
  backoffMs,
  type DeliveryMeta,
  type RedeliveryPolicy,
  type SubscribeOptions,
} from './bus.js';
import { type BusSchemas, isPersisted, type Subject, validate } from './subjects.js';

export type Outcome = { kind: 'ack' } | { kind: 'retry'; delayMs: number } | { kind: 'drop' };

export interface DispatchContext<S extends Subject> {
  subject: S;
  handler: BusHandler<S>;
  filter?: SubscribeOptions<S>['filter'];
  redelivery: RedeliveryPolicy;
  log: BusLogger;
  /** Identifies the subscription in logs (durable or consumer name). */
  consumer: string;
  /** The subscription object; lets unsubscribe() know it is being called from its own handler. */
  owner: object;
}

// Which subscription's handler the current async context runs in. unsubscribe()/close() wait for the
// handler in progress; called from inside that handler they must not, or they would wait for themselves.
const inHandler = new AsyncLocalStorage<object>();

export function calledFromHandlerOf(owner: object): boolean {
  return inHandler.getStore() === owner;
}

export async function dispatch<S extends Subject>(
  ctx: DispatchContext<S>,
  raw: string,
  meta: DeliveryMeta,
): Promise<Outcome> {
  const where = { subject: ctx.subject, consumer: ctx.consumer, seq: meta.seq };
  let msg: BusSchemas[S];
  try {
    msg = validate(ctx.subject, JSON.parse(raw), { strict: false });
  } catch (err) {
    // Redelivering a malformed message would fail the same way forever; drop it loudly instead.
    ctx.log.error('dropping invalid message', {
      ...where,
      error: (err as Error).message,
      payload: raw.slice(0, 200),
    });
    return { kind: 'drop' };
  }
  try {
    if (ctx.filter && !ctx.filter(msg)) return { kind: 'ack' };
    await inHandler.run(ctx.owner, () => ctx.handler(msg, meta));
    return { kind: 'ack' };
  } catch (err) {
    if (!isPersisted(ctx.subject)) {
      ctx.log.error('handler failed; core messages are not redelivered', { ...where, error: errText(err) });
      return { kind: 'drop' };
    }
    if (meta.attempt >= ctx.redelivery.maxAttempts) {
      ctx.log.error(`handler failed ${meta.attempt} times; dropping the message`, {
        ...where,
        error: errText(err),
      });
      return { kind: 'drop' };
    }
    const delayMs = backoffMs(ctx.redelivery, meta.attempt);
    ctx.log.warn(`handler failed; redelivering in ${delayMs} ms`, {
      ...where,
      attempt: meta.attempt,
      error: errText(err),
    });
    return { kind: 'retry', delayMs };
  }
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A wake-up for a consumer loop waiting for work; fire() before anyone waits is a no-op by design (loops re-check their queue). */
export class Signal {
  private resolve: (() => void) | null = null;
  private promise: Promise<void> | null = null;

  wait(): Promise<void> {
    this.promise ??= new Promise<void>((r) => {
      this.resolve = r;
    });
    return this.promise;
  }

  fire(): void {
    const r = this.resolve;
    this.resolve = null;
    this.promise = null;
    r?.();
  }
}
