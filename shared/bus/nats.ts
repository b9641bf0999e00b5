// The event bus over NATS: persisted subjects go through one JetStream stream and are consumed with
// pull consumers that have at most one unacknowledged message (max_ack_pending 1), which is what makes
// "awaited handler, strict order, redelivery before anything later" hold across processes; heartbeats
// use plain core NATS subjects.
//
// The pull loop is written against the JetStream wire protocol ($JS.API.CONSUMER.MSG.NEXT) rather
// than the client's consume(): consume()'s stop() drops the messages the server already sent, and with
// max_ack_pending 1 such a message blocks a durable for a whole ack_wait after a re-subscribe. Here
// unsubscribe drains the inbox, so every message the server handed out is handled and acknowledged.

import { readFileSync } from 'node:fs';
import {
  AckPolicy,
  type Authenticator,
  connect,
  createInbox,
  credsAuthenticator,
  DeliverPolicy,
  DiscardPolicy,
  Events,
  type JetStreamClient,
  type JetStreamManager,
  type Msg,
  type NatsConnection,
  type Subscription as NatsSubscription,
  nanos,
  nkeyAuthenticator,
  nuid,
  ReplayPolicy,
  RetentionPolicy,
  StorageType,
} from 'nats';
import {
  type BusHandler,
  type BusHealth,
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
import { isPersisted, isSubject, PERSISTED_SUBJECTS, STREAM_NAME, type Subject } from './subjects.js';

export interface StreamSettings {
  /** Messages older than this are discarded; default 7 days. Also how long an idle durable is kept. */
  maxAgeS?: number;
  /** Oldest messages are discarded beyond this total size; default 1 GiB. */
  maxBytes?: number;
  /** JetStream replicas (1 on a single server, 3 on a typical cluster); default 1. */
  replicas?: number;
}

export interface NatsBusOptions extends BusOptions {
  /** One URL, a comma-separated list, or an array (`nats://host:4222`). */
  servers: string | string[];
  /** Connection name shown by `nats server report connections` (e.g. the service and its id). */
  name: string;
  /**
   * Limits of the RMT stream. Every service that connects creates or updates the stream to these
   * values, so all of them should be given the same settings.
   */
  stream?: StreamSettings;
  /** How long to wait for the first connection; default 5000 ms. */
  connectTimeoutMs?: number;
  /** A NATS credentials file (user JWT + nkey seed), e.g. mounted from a Kubernetes Secret. */
  credsFile?: string;
  /** A file holding an nkey seed (`SU...`): the user of a server that lists nkeys (`rmt up`'s). */
  nkeySeedFile?: string;
  /**
   * How long to wait for the RMT stream when this connection may not create it (its owner, the
   * coordinator, has not started yet); default 60 s.
   */
  streamWaitMs?: number;
  /** TLS to the server: `caFile` to verify it, `certFile`/`keyFile` for a client certificate. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

const DEFAULT_STREAM = { maxAgeS: 7 * 24 * 3600, maxBytes: 1024 ** 3, replicas: 1 };
// Handlers may run longer than this: a progress signal (+WPI) is sent every third of it.
const ACK_WAIT_MS = 30_000;
const PULL_BATCH = 256;
const PULL_EXPIRES_MS = 30_000;
const PULL_HEARTBEAT_MS = 5_000;
// A consumer nobody pulls from is removed by the server after this long (ephemeral ones only).
const EPHEMERAL_INACTIVE_MS = 60_000;
// A persisted publish keeps retrying through an outage this long before it rejects.
const PUBLISH_DEADLINE_MS = 30_000;
const PUBACK_TIMEOUT_MS = 5_000;
const decoder = new TextDecoder();

export class NatsBus implements EventBus {
  private closed = false;
  private readonly subs = new Set<PullSubscription | CoreSubscription>();
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly active = new Set<string>();
  private readonly redelivery: RedeliveryPolicy;
  private readonly log: BusLogger;
  private disconnected = false;
  private changedAt = Date.now();
  private readonly reconnect = new Signal();

  private constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    private readonly stream: Required<StreamSettings>,
    opts: NatsBusOptions,
  ) {
    this.log = opts.logger ?? stderrLogger;
    this.redelivery = redeliveryPolicy(opts.redelivery);
    this.watchConnection();
  }

  /**
   * Connects, checks that JetStream is available and creates or updates the RMT stream. Throws an
   * Error naming the server(s) when none can be reached.
   */
  static async connect(opts: NatsBusOptions): Promise<NatsBus> {
    const servers = (Array.isArray(opts.servers) ? opts.servers : opts.servers.split(','))
      .map((s) => s.trim())
      .filter((s) => s.length > 0);
    if (servers.length === 0) throw new Error('NatsBus.connect: no server given');
    const where = servers.length === 1 ? `NATS server ${servers[0]}` : `NATS servers ${servers.join(', ')}`;
    // Invalid options fail before any connection is made.
    redeliveryPolicy(opts.redelivery);
    let nc: NatsConnection;
    try {
      nc = await connect({
        servers,
        name: opts.name,
        timeout: opts.connectTimeoutMs ?? 5000,
        authenticator: authenticatorOf(opts),
        tls: opts.tls,
        // Once connected, outages are ridden out: the client reconnects forever and resubscribes.
        maxReconnectAttempts: -1,
        reconnectTimeWait: 1000,
      });
    } catch (err) {
      const e = err as { code?: string; message?: string };
      if (e.code === 'AUTHORIZATION_VIOLATION' || /authoriz|authentic/i.test(e.message ?? '')) {
        throw new Error(
          `${where} refused the connection's credentials (${e.message}); check --bus-creds or --bus-nkey-seed`,
          {
            cause: err,
          },
        );
      }
      throw new Error(
        `${where} could not be reached (${e.code ?? e.message}); is nats-server running there?`,
        {
          cause: err,
        },
      );
    }
    try {
      const jsm = await nc.jetstreamManager();
      const stream = { ...DEFAULT_STREAM, ...opts.stream };
      await ensureStream(jsm, stream, opts.streamWaitMs ?? 60_000);
      return new NatsBus(nc, nc.jetstream(), jsm, stream, opts);
    } catch (err) {
      await nc.close().catch(() => {});
      const msg = (err as Error).message;
      if (/jetstream not enabled|no responders|503/i.test(msg)) {
        throw new Error(`${where}: no JetStream (start nats-server with -js -sd <dir>)`, {
          cause: err,
        });
      }
      throw new Error(`${where}: setting up stream ${STREAM_NAME} failed: ${msg}`, {
        cause: err,
      });
    }
  }

  health(): BusHealth {
    return { connected: !this.disconnected && !this.nc.isClosed(), since: this.changedAt };
  }

  /** The server the connection is on now. */
  get server(): string {
    return this.nc.getServer();
  }

  async publish<S extends Subject>(subject: S, msg: BusSchemas[S]): Promise<void> {
    this.assertOpen('publish');
    await this.send(subject, encodeMessage(subject, msg, this.maxPayload()));
  }

  /**
   * Sends `raw` as is, skipping validation: stands in for a foreign or buggy publisher in tests of
   * how subscribers treat malformed messages. Not part of EventBus.
   */
  async publishUnchecked(subject: Subject, raw: string): Promise<void> {
    this.assertOpen('publish');
    if (!isSubject(subject)) throw new Error(`publish: unknown subject ${JSON.stringify(subject)}`);
    await this.send(subject, raw);
  }

  async subscribe<S extends Subject>(
    subject: S,
    handler: BusHandler<S>,
    opts: SubscribeOptions<S> = {},
  ): Promise<Subscription> {
    this.assertOpen('subscribe');
    const deliver = checkSubscribe(subject, opts);
    const ctx = {
      subject,
      handler,
      filter: opts.filter,
      redelivery: this.redelivery,
      log: this.log,
      consumer: opts.durable ?? 'core',
      owner: {},
    } as unknown as DispatchContext<Subject>;
    let sub: PullSubscription | CoreSubscription;
    if (isPersisted(subject)) {
      const key = opts.durable === undefined ? null : consumerName(opts.durable, subject);
      if (key && this.active.has(key)) {
        throw new Error(`subscribe ${subject}: durable "${opts.durable}" already has an active subscription`);
      }
      if (key) this.active.add(key);
      try {
        const name = await this.ensureConsumer(subject, deliver, key);
        sub = new PullSubscription(this.nc, this.jsm, name, key === null, ctx, this.log, () => {
          if (key) this.active.delete(key);
        });
      } catch (err) {
        if (key) this.active.delete(key);
        throw new Error(
          `subscribe ${subject}: creating the JetStream consumer failed: ${(err as Error).message}`,
          {
            cause: err,
          },
        );
      }
    } else {
      sub = new CoreSubscription(this.nc, subject, ctx);
    }
    ctx.owner = sub;
    await sub.start();
    this.subs.add(sub);
    return {
      unsubscribe: async () => {
        await sub.unsubscribe();
        this.subs.delete(sub);
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled([...this.inflight]);
    await Promise.all([...this.subs].map((s) => s.unsubscribe()));
    if (!this.nc.isClosed()) await this.nc.drain().catch(() => this.nc.close());
  }

  private async send(subject: Subject, raw: string): Promise<void> {
    if (!isPersisted(subject)) {
      // Liveness beats are worth nothing late, so one sent during an outage is simply lost.
      try {
        this.nc.publish(subject, raw);
      } catch (err) {
        throw new Error(`${subject}: publish failed: ${(err as Error).message}`, { cause: err });
      }
      return;
    }
    const p = this.store(subject, raw);
    this.inflight.add(p);
    try {
      await p;
    } finally {
      this.inflight.delete(p);
    }
  }

  // The client discards what was written while it was disconnected (each reconnect attempt resets its
  // outbound buffer), so a publish during an outage would only time out. Wait for the connection
  // instead, and retry with the same message id: the stream's duplicate window drops a second copy
  // when the first one was stored but its acknowledgement was lost.
  private async store(subject: Subject, raw: string): Promise<void> {
    const msgID = nuid.next();
    const deadline = Date.now() + PUBLISH_DEADLINE_MS;
    for (;;) {
      try {
        await this.connected(deadline);
        await this.js.publish(subject, raw, {
          msgID,
          expect: { streamName: STREAM_NAME },
          timeout: PUBACK_TIMEOUT_MS,
        });
        return;
      } catch (err) {
        const code = (err as { code?: string }).code;
        const transient = code === 'TIMEOUT' || code === 'DISCONNECT' || code === '503';
        if (!transient || Date.now() >= deadline || this.nc.isClosed()) {
          throw new Error(
            `${subject}: storing the message in stream ${STREAM_NAME} failed: ${(err as Error).message}`,
            {
              cause: err,
            },
          );
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  private async connected(deadline: number): Promise<void> {
    while (this.disconnected) {
      const left = deadline - Date.now();
      if (left <= 0 || this.nc.isClosed())
        throw new Error(`not connected to NATS (last server ${this.nc.getServer()})`);
      await Promise.race([this.reconnect.wait(), new Promise((r) => setTimeout(r, Math.min(left, 1000)))]);
    }
  }

  private async ensureConsumer(
    subject: Subject,
    deliver: 'all' | 'new',
    durable: string | null,
  ): Promise<string> {
    const config = {
      ack_policy: AckPolicy.Explicit,
      ack_wait: nanos(ACK_WAIT_MS),
      // One message in flight: order holds even when a message is redelivered.
      max_ack_pending: 1,
      // Giving up on a message is decided in one place for both adapters: the client's
      // RedeliveryPolicy.maxAttempts, after which it sends +TERM.
      max_deliver: -1,
      filter_subject: subject,
      deliver_policy: deliver === 'all' ? DeliverPolicy.All : DeliverPolicy.New,
      replay_policy: ReplayPolicy.Instant,
    };
    if (durable === null) {
      const ci = await this.jsm.consumers.add(STREAM_NAME, {
        ...config,
        inactive_threshold: nanos(EPHEMERAL_INACTIVE_MS),
      });
      return ci.name;
    }
    const existing = await this.jsm.consumers.info(STREAM_NAME, durable).catch((err) => {
      if (isNotFound(err)) return null;
      throw err;
    });
    if (existing) {
      if (existing.config.filter_subject !== subject) {
        throw new Error(
          `consumer ${durable} exists with filter ${existing.config.filter_subject}, not ${subject}`,
        );
      }
      return durable;
    }
    try {
      await this.jsm.consumers.add(STREAM_NAME, {
        ...config,
        durable_name: durable,
        // Per-run durables (coordinator-<run>) would pile up; one idle longer than the stream keeps
        // messages has nothing left to resume anyway.
        inactive_threshold: nanos(this.stream.maxAgeS * 1000),
      });
    } catch (err) {
      // Another process created it between our info and add: resuming it is what we want.
      if (!(await this.jsm.consumers.info(STREAM_NAME, durable).catch(() => null))) throw err;
    }
    return durable;
  }

  private maxPayload(): number {
    return this.nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD;
  }

  private watchConnection(): void {
    void (async () => {
      for await (const s of this.nc.status()) {
        if (s.type === Events.Disconnect) {
          if (!this.disconnected) this.changedAt = Date.now();
          this.disconnected = true;
          this.log.warn('disconnected from NATS; reconnecting', { server: s.data });
        } else if (s.type === Events.Reconnect) {
          this.disconnected = false;
          this.changedAt = Date.now();
          this.reconnect.fire();
          this.log.warn('reconnected to NATS', { server: s.data });
          for (const sub of this.subs) if (sub instanceof PullSubscription) sub.reconnected();
        } else if (s.type === Events.Error)
          this.log.error('NATS connection error', { error: String(s.data) });
      }
    })().catch(() => {});
  }

  private assertOpen(op: string): void {
    if (this.closed) throw new Error(`${op}: the bus is closed`);
  }
}

/** Name of the JetStream consumer behind a durable: durable names are scoped to a subject. */
export function consumerName(durable: string, subject: Subject): string {
  return `${durable}__${subject.replace(/^rmt\./, '').replace(/\./g, '_')}`;
}

/** The credentials of a connection: a creds file (JWT), an nkey seed file, or none. */
function authenticatorOf(opts: NatsBusOptions): Authenticator | undefined {
  if (opts.credsFile && opts.nkeySeedFile)
    throw new Error('NATS credentials: a creds file or an nkey seed, not both');
  if (opts.credsFile) return credsAuthenticator(readFileSync(opts.credsFile));
  if (!opts.nkeySeedFile) return undefined;
  const seed = readFileSync(opts.nkeySeedFile, 'utf8').trim();
  // A user seed is "SU" and 56 more base32 characters; the error never shows the file's content.
  if (!/^SU[A-Z2-7]{56}$/.test(seed)) throw new Error(`${opts.nkeySeedFile}: not an nkey user seed (SU...)`);
  return nkeyAuthenticator(new TextEncoder().encode(seed));
}

async function ensureStream(
  jsm: JetStreamManager,
  s: Required<StreamSettings>,
  waitMs: number,
): Promise<void> {
  const limits = {
    max_age: nanos(s.maxAgeS * 1000),
    max_bytes: s.maxBytes,
  };
  let info = await jsm.streams.info(STREAM_NAME).catch((err) => {
    if (isNotFound(err)) return null;
    throw err;
  });
  if (!info) {
    try {
      await jsm.streams.add({
        name: STREAM_NAME,
        subjects: [...PERSISTED_SUBJECTS],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        discard: DiscardPolicy.Old,
        num_replicas: s.replicas,
        ...limits,
      });
      return;
    } catch (err) {
      // Several services start at once; whoever lost the race uses the winner's stream. A service
      // that may not create it (NATS permissions) waits for the one that may.
      const end = Date.now() + waitMs;
      info = await jsm.streams.info(STREAM_NAME).catch(() => null);
      while (!info && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 500));
        info = await jsm.streams.info(STREAM_NAME).catch(() => null);
      }
      if (!info) throw err;
    }
  }
  const have = info.config.subjects ?? [];
  const missing = PERSISTED_SUBJECTS.filter((x) => !have.includes(x));
  if (
    missing.length > 0 ||
    info.config.max_age !== limits.max_age ||
    info.config.max_bytes !== limits.max_bytes
  ) {
    await jsm.streams.update(STREAM_NAME, { subjects: [...have, ...missing], ...limits });
  }
}

function isNotFound(err: unknown): boolean {
  const e = err as { api_error?: { code?: number }; message?: string };
  return e?.api_error?.code === 404 || /not found/i.test(e?.message ?? '');
}

/** Delivery count and stream sequence from a JetStream ack subject (v1 and v2 token layouts). */
function parseAckSubject(reply: string | undefined): { delivered: number; seq: number } | null {
  if (!reply?.startsWith('$JS.ACK.')) return null;
  const t = reply.split('.');
  const base = t.length === 9 ? 2 : 4;
  const delivered = Number(t[base + 2]);
  const seq = Number(t[base + 3]);
  return Number.isFinite(delivered) && Number.isFinite(seq) ? { delivered, seq } : null;
}

class PullSubscription {
  private readonly inbox = createInbox();
  private sub: NatsSubscription | null = null;
  private readonly queue: Msg[] = [];
  private readonly wake = new Signal();
  private requestId = 0;
  private remaining = 0;
  private lastActivity = 0;
  private watchdog: NodeJS.Timeout | null = null;
  private retryPull: NodeJS.Timeout | null = null;
  private drained = false;
  private stopping: Promise<void> | null = null;
  private pump: Promise<void> = Promise.resolve();
  private complained = false;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly consumer: string,
    private readonly ephemeral: boolean,
    private readonly ctx: DispatchContext<Subject>,
    private readonly log: BusLogger,
    private readonly onDone: () => void,
  ) {
    ctx.consumer = consumer;
  }

  async start(): Promise<void> {
    // One inbox per pull request (inbox.<id>) tells the statuses of a superseded request apart.
    this.sub = this.nc.subscribe(`${this.inbox}.*`, { callback: (err, msg) => this.receive(err, msg) });
    await this.nc.flush();
    this.pull();
    this.watchdog = setInterval(() => this.checkAlive(), PULL_HEARTBEAT_MS);
    this.watchdog.unref();
    this.pump = this.run();
  }

  /** After a reconnect the server may have lost our pull request (it restarted): ask again. */
  reconnected(): void {
    this.pull();
  }

  unsubscribe(): Promise<void> {
    this.stopping ??= this.stop();
    if (calledFromHandlerOf(this)) return Promise.resolve();
    return this.stopping;
  }

  private async stop(): Promise<void> {
    if (this.watchdog) clearInterval(this.watchdog);
    if (this.retryPull) clearTimeout(this.retryPull);
    // Drain: the server stops serving our pull request once the inbox has no interest, and every
    // message it sent before that still reaches the callback, to be handled below.
    if (this.sub && !this.sub.isClosed()) await this.sub.drain().catch(() => {});
    this.drained = true;
    this.wake.fire();
    if (!calledFromHandlerOf(this)) await this.pump;
    if (!this.nc.isClosed()) {
      // Acks are fire-and-forget publishes; make sure the server has them before a resume elsewhere.
      await this.nc.flush().catch(() => {});
      if (this.ephemeral) await this.jsm.consumers.delete(STREAM_NAME, this.consumer).catch(() => {});
    }
    this.onDone();
  }

  private pull(): void {
    if (this.stopping || this.nc.isClosed()) return;
    this.requestId++;
    this.remaining = PULL_BATCH;
    this.lastActivity = Date.now();
    const req = {
      batch: PULL_BATCH,
      expires: nanos(PULL_EXPIRES_MS),
      idle_heartbeat: nanos(PULL_HEARTBEAT_MS),
    };
    try {
      this.nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${STREAM_NAME}.${this.consumer}`, JSON.stringify(req), {
        reply: `${this.inbox}.${this.requestId}`,
      });
    } catch {
      // Closed or draining connection: nothing more to pull.
    }
  }

  private pullLater(ms: number): void {
    if (this.retryPull || this.stopping) return;
    this.retryPull = setTimeout(() => {
      this.retryPull = null;
      this.pull();
    }, ms);
    this.retryPull.unref();
  }

  private receive(err: Error | null, msg: Msg): void {
    if (err) {
      this.log.error('JetStream pull subscription failed', { consumer: this.consumer, error: err.message });
      return;
    }
    const code = msg.headers?.code ?? 0;
    if (code === 0) {
      // A delivered message carries its own subject, not the inbox, so it cannot be told which request
      // it answers; counting it against the current one at worst pulls again a little early.
      this.lastActivity = Date.now();
      this.queue.push(msg);
      this.wake.fire();
      if (--this.remaining <= 0) this.pull();
      return;
    }
    // Statuses (heartbeats, expiry, errors) do arrive on the request's own inbox.
    const current = msg.subject === `${this.inbox}.${this.requestId}`;
    if (current) this.lastActivity = Date.now();
    if (!current || code === 100) return;
    // The current request ended: it expired (408), hit a server limit (409), or the consumer or
    // stream is gone (404/503). Ask again; back off when the cause will not go away by itself.
    if (code === 408) {
      this.pull();
      return;
    }
    const description = msg.headers?.description ?? '';
    if (!this.complained) {
      this.complained = true;
      this.log.warn('JetStream pull request ended; pulling again', {
        consumer: this.consumer,
        code,
        description,
      });
    }
    this.pullLater(1000);
  }

  private checkAlive(): void {
    // No message or heartbeat for three heartbeat intervals: the request was lost (a server restart),
    // so issue a new one. A superseded request that is still alive only adds capacity.
    if (Date.now() - this.lastActivity > 3 * PULL_HEARTBEAT_MS) this.pull();
  }

  private async run(): Promise<void> {
    for (;;) {
      const msg = this.queue.shift();
      if (!msg) {
        if (this.drained) return;
        await this.wake.wait();
        continue;
      }
      const info = parseAckSubject(msg.reply);
      if (!info) {
        this.log.error('message without a JetStream ack subject; dropped', { consumer: this.consumer });
        continue;
      }
      this.complained = false;
      const working = setInterval(() => this.respond(msg, '+WPI'), ACK_WAIT_MS / 3);
      let outcome: Awaited<ReturnType<typeof dispatch>>;
      try {
        outcome = await dispatch(this.ctx, decoder.decode(msg.data), {
          seq: info.seq,
          redelivered: info.delivered > 1,
          attempt: info.delivered,
        });
      } finally {
        clearInterval(working);
      }
      if (outcome.kind === 'ack') this.respond(msg, '+ACK');
      else if (outcome.kind === 'drop') this.respond(msg, '+TERM');
      else this.respond(msg, `-NAK ${JSON.stringify({ delay: nanos(outcome.delayMs) })}`);
    }
  }

  private respond(msg: Msg, body: string): void {
    try {
      msg.respond(body);
    } catch {
      // Connection closed: the server redelivers the message after ack_wait.
    }
  }
}

class CoreSubscription {
  private sub: NatsSubscription | null = null;
  private readonly queue: Uint8Array[] = [];
  private readonly wake = new Signal();
  private seq = 0;
  private drained = false;
  private stopping: Promise<void> | null = null;
  private pump: Promise<void> = Promise.resolve();

  constructor(
    private readonly nc: NatsConnection,
    private readonly subject: Subject,
    private readonly ctx: DispatchContext<Subject>,
  ) {}

  async start(): Promise<void> {
    this.sub = this.nc.subscribe(this.subject, {
      callback: (err, msg) => {
        if (err) {
          this.ctx.log.error('subscription failed', { subject: this.subject, error: err.message });
          return;
        }
        this.queue.push(msg.data);
        this.wake.fire();
      },
    });
    // subscribe() resolves once the server has the interest, so the next publish is seen.
    await this.nc.flush();
    this.pump = this.run();
  }

  unsubscribe(): Promise<void> {
    this.stopping ??= this.stop();
    if (calledFromHandlerOf(this)) return Promise.resolve();
    return this.stopping;
  }

  private async stop(): Promise<void> {
    if (this.sub && !this.sub.isClosed()) await this.sub.drain().catch(() => {});
    this.drained = true;
    this.wake.fire();
    if (!calledFromHandlerOf(this)) await this.pump;
  }

  private async run(): Promise<void> {
    for (;;) {
      const data = this.queue.shift();
      if (!data) {
        if (this.drained) return;
        await this.wake.wait();
        continue;
      }
      this.seq++;
      await dispatch(this.ctx, decoder.decode(data), { seq: this.seq, redelivered: false, attempt: 1 });
    }
  }
}
