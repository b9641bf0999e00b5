// The event bus of the embedded mode: all services in one process, no server. It mirrors what NatsBus
// does with JetStream (a retained log of the persisted subjects, per-durable cursors, one message in
// flight per consumer, redelivery with backoff) so that code tested here behaves the same on NATS.

import {
  type BusHandler,
  type BusLogger,
  type BusOptions,
  type BusSchemas,
  checkSubscribe,
  DEFAULT_MAX_PAYLOAD,
  type EventBus,
  encodeMessage,
  type RedeliveryPolicy,
  redeliveryPolicy,
  type SubscribeOptions,
  type Subscription,
  stderrLogger,
} from './bus.js';
import { calledFromHandlerOf, type DispatchContext, dispatch, Signal } from './dispatch.js';
import { isPersisted, isSubject, type PersistedSubject, type Subject } from './subjects.js';

export interface InProcessBusOptions extends BusOptions {
  /**
   * Limits of the retained log, like the JetStream stream's: the oldest messages go first once
   * either is exceeded. Default: no age limit, 256 MiB.
   */
  retention?: { maxAgeS?: number; maxBytes?: number };
  /** Largest accepted message in bytes; default NATS' 1 MiB, so oversized messages fail here too. */
  maxPayload?: number;
}

interface Stored {
  seq: number;
  subject: PersistedSubject;
  raw: string;
  bytes: number;
  at: number;
}

// Position of a consumer in the log. A durable's outlives its subscriptions.
interface Cursor {
  /** Everything up to this sequence has been handled (acked, filtered out or dropped). */
  ackSeq: number;
  /** The message last handed out and not acked, with its delivery count, for `redelivered`. */
  pendingSeq: number;
  pendingAttempts: number;
  active: boolean;
}

export class InProcessBus implements EventBus {
  private readonly log: Stored[] = [];
  private logBytes = 0;
  private lastSeq = 0;
  private readonly durables = new Map<string, Cursor>();
  private readonly subs = new Set<InProcessSubscription>();
  private readonly logger: BusLogger;
  private readonly redelivery: RedeliveryPolicy;
  private readonly maxPayload: number;
  private readonly maxAgeMs: number;
  private readonly maxBytes: number;
  private closed = false;

  constructor(opts: InProcessBusOptions = {}) {
    this.logger = opts.logger ?? stderrLogger;
    this.redelivery = redeliveryPolicy(opts.redelivery);
    this.maxPayload = opts.maxPayload ?? DEFAULT_MAX_PAYLOAD;
    this.maxAgeMs = (opts.retention?.maxAgeS ?? Infinity) * 1000;
    this.maxBytes = opts.retention?.maxBytes ?? 256 * 1024 * 1024;
  }

  async publish<S extends Subject>(subject: S, msg: BusSchemas[S]): Promise<void> {
    this.assertOpen('publish');
    this.deliver(subject, encodeMessage(subject, msg, this.maxPayload));
  }

  /**
   * Sends `raw` as is, skipping validation: stands in for a foreign or buggy publisher in tests of
   * how subscribers treat malformed messages. Not part of EventBus.
   */
  async publishUnchecked(subject: Subject, raw: string): Promise<void> {
    this.assertOpen('publish');
    if (!isSubject(subject)) throw new Error(`publish: unknown subject ${JSON.stringify(subject)}`);
    this.deliver(subject, raw);
  }

  async subscribe<S extends Subject>(
    subject: S,
    handler: BusHandler<S>,
    opts: SubscribeOptions<S> = {},
  ): Promise<Subscription> {
    this.assertOpen('subscribe');
    const deliver = checkSubscribe(subject, opts);
    let cursor: Cursor;
    let name: string;
    if (opts.durable !== undefined) {
      const key = `${subject}\u0000${opts.durable}`;
      name = opts.durable;
      const existing = this.durables.get(key);
      if (existing?.active) {
        throw new Error(`subscribe ${subject}: durable "${opts.durable}" already has an active subscription`);
      }
      cursor = existing ?? this.newCursor(deliver);
      this.durables.set(key, cursor);
    } else {
      name = `ephemeral-${this.subs.size + 1}`;
      cursor = this.newCursor(deliver);
    }
    cursor.active = true;
    const sub = new InProcessSubscription(this, subject, cursor, (s) => this.subs.delete(s));
    const ctx: DispatchContext<S> = {
      subject,
      handler,
      filter: opts.filter,
      redelivery: this.redelivery,
      log: this.logger,
      consumer: name,
      owner: sub,
    };
    sub.start(ctx as unknown as DispatchContext<Subject>);
    this.subs.add(sub);
    return sub;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.subs].map((s) => s.unsubscribe()));
  }

  /** The next retained message of `subject` after sequence `after`, if any (for the subscriptions). */
  next(subject: Subject, after: number): Stored | undefined {
    this.expire();
    let lo = 0;
    let hi = this.log.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.log[mid].seq <= after) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.log.length; i++) if (this.log[i].subject === subject) return this.log[i];
    return undefined;
  }

  private newCursor(deliver: 'all' | 'new'): Cursor {
    const start = deliver === 'all' ? 0 : this.lastSeq;
    return { ackSeq: start, pendingSeq: 0, pendingAttempts: 0, active: false };
  }

  private deliver(subject: Subject, raw: string): void {
    if (isPersisted(subject)) {
      const bytes = Buffer.byteLength(raw);
      this.log.push({ seq: ++this.lastSeq, subject, raw, bytes, at: Date.now() });
      this.logBytes += bytes;
      this.expire();
    }
    for (const s of this.subs) if (s.subject === subject) s.offer(raw);
  }

  private expire(): void {
    const cutoff = Date.now() - this.maxAgeMs;
    let n = 0;
    while (n < this.log.length && (this.logBytes > this.maxBytes || this.log[n].at < cutoff)) {
      this.logBytes -= this.log[n].bytes;
      n++;
    }
    if (n > 0) this.log.splice(0, n);
  }

  private assertOpen(op: string): void {
    if (this.closed) throw new Error(`${op}: the bus is closed`);
  }
}

class InProcessSubscription implements Subscription {
  private readonly wake = new Signal();
  private cancelSleep: (() => void) | null = null;
  private readonly queue: string[] = [];
  private coreSeq = 0;
  private stopping = false;
  private done: Promise<void> = Promise.resolve();
  private readonly persisted: boolean;

  constructor(
    private readonly bus: InProcessBus,
    readonly subject: Subject,
    private readonly cursor: Cursor,
    private readonly onDone: (s: InProcessSubscription) => void,
  ) {
    this.persisted = isPersisted(subject);
  }

  start(ctx: DispatchContext<Subject>): void {
    this.done = (this.persisted ? this.pumpLog(ctx) : this.pumpQueue(ctx)).finally(() => {
      this.cursor.active = false;
      this.onDone(this);
    });
  }

  /** Called for every message published on the subject. */
  offer(raw: string): void {
    if (this.stopping) return;
    if (!this.persisted) this.queue.push(raw);
    this.wake.fire();
  }

  async unsubscribe(): Promise<void> {
    this.stopping = true;
    this.wake.fire();
    this.cancelSleep?.();
    if (calledFromHandlerOf(this)) return;
    await this.done;
  }

  private async pumpLog(ctx: DispatchContext<Subject>): Promise<void> {
    // Handlers run after publish() returned, never inside it, as they would over a network.
    await Promise.resolve();
    const c = this.cursor;
    while (!this.stopping) {
      const m = this.bus.next(this.subject, c.ackSeq);
      if (!m) {
        await this.wake.wait();
        continue;
      }
      const attempt = c.pendingSeq === m.seq ? c.pendingAttempts + 1 : 1;
      c.pendingSeq = m.seq;
      c.pendingAttempts = attempt;
      const outcome = await dispatch(ctx, m.raw, { seq: m.seq, redelivered: attempt > 1, attempt });
      if (outcome.kind === 'retry') {
        await this.sleep(outcome.delayMs);
      } else {
        c.ackSeq = m.seq;
      }
    }
  }

  private async pumpQueue(ctx: DispatchContext<Subject>): Promise<void> {
    await Promise.resolve();
    // Messages already queued when unsubscribe() is called are still handled: that is what a NATS
    // subscription drain does with the messages the client has received.
    for (;;) {
      const raw = this.queue.shift();
      if (raw === undefined) {
        if (this.stopping) return;
        await this.wake.wait();
        continue;
      }
      this.coreSeq++;
      await dispatch(ctx, raw, { seq: this.coreSeq, redelivered: false, attempt: 1 });
    }
  }

  // Cut short by unsubscribe(): the message stays unacked, so a durable gets it again on resume.
  private sleep(ms: number): Promise<void> {
    if (this.stopping) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.cancelSleep = null;
        resolve();
      }, ms);
      this.cancelSleep = () => {
        clearTimeout(t);
        this.cancelSleep = null;
        resolve();
      };
    });
  }
}
