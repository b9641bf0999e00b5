import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { AckPolicy, StorageType } from 'nats';
import type { BusLogger, DeliveryMeta, EventBus, RedeliveryPolicy } from '../shared/bus/bus.js';
import {
  type BusSchemas,
  BusValidationError,
  consumerName,
  createBus,
  InProcessBus,
  NatsBus,
  PERSISTED_SUBJECTS,
  positionChunks,
  STREAM_NAME,
  type Subject,
  validate,
} from '../shared/bus/index.js';
import { type NatsServer, startNatsServer } from './helpers/nats-server.js';

// The same behavioural suite runs against the in-process bus and against NatsBus on a private
// nats-server. Tests of one kind run concurrently on one server; each uses its own run id (and
// filters on it) so they cannot see each other's messages.

type TestBus = EventBus & { publishUnchecked(subject: Subject, raw: string): Promise<void> };
interface Logged {
  level: 'warn' | 'error';
  msg: string;
  fields?: Record<string, unknown>;
}
interface Made {
  bus: TestBus;
  logs: Logged[];
}

let nats: NatsServer;
test.before(async () => {
  nats = await startNatsServer();
});
test.after.always(async () => {
  await nats?.stop();
});

const FAST: Partial<RedeliveryPolicy> = { delayMs: 20, maxDelayMs: 80, maxAttempts: 3 };

function capture(): { logs: Logged[]; logger: BusLogger } {
  const logs: Logged[] = [];
  return {
    logs,
    logger: {
      warn: (msg, fields) => logs.push({ level: 'warn', msg, fields }),
      error: (msg, fields) => logs.push({ level: 'error', msg, fields }),
    },
  };
}

const KINDS = {
  inproc: async (): Promise<Made> => {
    const { logs, logger } = capture();
    return { bus: new InProcessBus({ logger, redelivery: FAST }), logs };
  },
  nats: async (): Promise<Made> => {
    const { logs, logger } = capture();
    const bus = await NatsBus.connect({ servers: nats.url, name: 'bus-test', logger, redelivery: FAST });
    return { bus, logs };
  },
};

let counter = 0;
const uniq = (p: string) => `${p}-${process.pid}-${++counter}`;

/** Records what a handler received; waitFor() resolves once `n` messages arrived. */
function recorder<S extends Subject>() {
  const got: { msg: BusSchemas[S]; meta: DeliveryMeta }[] = [];
  let waiters: { n: number; resolve: () => void }[] = [];
  const record = (msg: BusSchemas[S], meta: DeliveryMeta) => {
    got.push({ msg, meta });
    const ready = waiters.filter((w) => got.length >= w.n);
    waiters = waiters.filter((w) => got.length < w.n);
    for (const w of ready) w.resolve();
  };
  // Generous: the whole ava run shares two cores with nats-server and other test files.
  const waitFor = (n: number, ms = 10_000) =>
    new Promise<void>((resolve, reject) => {
      if (got.length >= n) return resolve();
      const t = setTimeout(
        () => reject(new Error(`timed out waiting for ${n} messages, got ${got.length}`)),
        ms,
      );
      waiters.push({
        n,
        resolve: () => {
          clearTimeout(t);
          resolve();
        },
      });
    });
  return { got, record, waitFor };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function samples(run: string): { [S in Subject]: BusSchemas[S] } {
  return {
    'rmt.positions.scored': {
      run_id: run,
      split: 'train',
      chunk: 0,
      chunks: 2,
      positions: [
        { id: 3, entropy: 1.25 },
        { id: 9, entropy: 0 },
      ],
    },
    'rmt.difficulty.observed': {
      run_id: run,
      step: 4,
      position_id: 9,
      accuracy: 0.375,
      group_size: 8,
      weight_version: 3,
      worker_id: 'w-1',
    },
    'rmt.weights.published': {
      run_id: run,
      version: 5,
      step: 5,
      learner: '127.0.0.1:50051',
      tensors: 12,
      bytes: 123456,
    },
    'rmt.metrics.step': { run_id: run, step: 5, metrics: { loss: 1.5, 'critic/score/mean': 0.25 } },
    'rmt.workers.heartbeat': {
      worker_id: run,
      address: '127.0.0.1:50052',
      weight_version: 5,
      busy: false,
      run_id: null,
      ts: 1_700_000_000_000,
    },
  };
}

const metric = (run_id: string, step: number): BusSchemas['rmt.metrics.step'] => ({
  run_id,
  step,
  metrics: { x: step },
});
const byRun =
  (run: string) =>
  (m: { run_id: string }): boolean =>
    m.run_id === run;

for (const [kind, make] of Object.entries(KINDS)) {
  const t_ = (name: string) => `${kind}: ${name}`;

  test(t_('publish/subscribe round trip on every subject'), async (t) => {
    const { bus } = await make();
    t.teardown(() => bus.close());
    const run = uniq('rt');
    const sample = samples(run);
    for (const subject of Object.keys(sample) as Subject[]) {
      const r = recorder<typeof subject>();
      const filter = (m: BusSchemas[typeof subject]) =>
        'worker_id' in m && subject === 'rmt.workers.heartbeat' ? m.worker_id === run : m.run_id === run;
      const sub = await bus.subscribe(subject, r.record, { filter });
      await bus.publish(subject, sample[subject]);
      await r.waitFor(1);
      t.deepEqual(r.got[0].msg, sample[subject], subject);
      t.false(r.got[0].meta.redelivered);
      t.is(r.got[0].meta.attempt, 1);
      await sub.unsubscribe();
    }
  });

  test(t_('publish rejects malformed messages, naming subject and field'), async (t) => {
    const { bus } = await make();
    t.teardown(() => bus.close());
    const run = uniq('bad');
    const s = samples(run);
    const r = recorder<'rmt.difficulty.observed'>();
    await bus.subscribe('rmt.difficulty.observed', r.record, { filter: byRun(run) });
    const cases: [Subject, unknown, RegExp][] = [
      ['rmt.difficulty.observed', { ...s['rmt.difficulty.observed'], accuracy: 1.5 }, /accuracy.*\[0, 1\]/],
      ['rmt.difficulty.observed', { ...s['rmt.difficulty.observed'], worker_id: '' }, /worker_id/],
      ['rmt.difficulty.observed', { ...s['rmt.difficulty.observed'], step: 1.5 }, /"step".*integer/],
      ['rmt.difficulty.observed', { ...s['rmt.difficulty.observed'], acuracy: 0.5 }, /acuracy.*not part/],
      ['rmt.positions.scored', { ...s['rmt.positions.scored'], split: 'test' }, /split/],
      ['rmt.positions.scored', { ...s['rmt.positions.scored'], chunk: 2 }, /chunk.*< chunks/],
      [
        'rmt.positions.scored',
        { ...s['rmt.positions.scored'], positions: [{ id: 1, entropy: 'high' }] },
        /positions\[0\]\.entropy/,
      ],
      ['rmt.weights.published', { ...s['rmt.weights.published'], learner: 7 }, /learner/],
      [
        'rmt.metrics.step',
        { ...s['rmt.metrics.step'], metrics: { loss: Number.NaN } },
        /metrics\.loss.*finite/,
      ],
      ['rmt.metrics.step', { run_id: run, step: 1 }, /metrics/],
      ['rmt.workers.heartbeat', { ...s['rmt.workers.heartbeat'], busy: 'no' }, /busy.*boolean/],
      ['rmt.workers.heartbeat', { ...s['rmt.workers.heartbeat'], run_id: 3 }, /run_id/],
    ];
    for (const [subject, msg, re] of cases) {
      const err = await t.throwsAsync(bus.publish(subject, msg as never), { instanceOf: BusValidationError });
      t.true(err.message.startsWith(`${subject}: field `), err.message);
      t.regex(err.message, re);
    }
    await t.throwsAsync(bus.publish('rmt.nope' as Subject, {} as never), { message: /unknown subject/ });
    // Nothing malformed reached the subscriber: the next valid message is the first it sees.
    await bus.publish('rmt.difficulty.observed', s['rmt.difficulty.observed']);
    await r.waitFor(1);
    await sleep(50);
    t.is(r.got.length, 1);
  });

  test(t_('oversized messages are refused with a hint to chunk'), async (t) => {
    const { bus } = await make();
    t.teardown(() => bus.close());
    const run = uniq('big');
    const positions = Array.from({ length: 40_000 }, (_, i) => ({ id: i, entropy: Math.PI }));
    await t.throwsAsync(
      bus.publish('rmt.positions.scored', { run_id: run, split: 'train', chunk: 0, chunks: 1, positions }),
      {
        message: /rmt\.positions\.scored: message of \d+ bytes exceeds the max payload.*smaller chunks/,
      },
    );
    const r = recorder<'rmt.positions.scored'>();
    await bus.subscribe('rmt.positions.scored', r.record, { filter: byRun(run) });
    const chunks = positionChunks(run, 'train', positions);
    for (const c of chunks) await bus.publish('rmt.positions.scored', c);
    await r.waitFor(chunks.length);
    t.deepEqual(
      r.got.flatMap((g) => g.msg.positions.map((p) => p.id)),
      positions.map((p) => p.id),
    );
  });

  test(t_('messages arrive in publish order, one handler call at a time'), async (t) => {
    const { bus } = await make();
    t.teardown(() => bus.close());
    const run = uniq('order');
    // A subject the other tests hardly use: consumers filter runs on the client, so a burst on a
    // shared subject would slow every other test's consumer of it down.
    const r = recorder<'rmt.weights.published'>();
    let running = 0;
    let overlap = false;
    await bus.subscribe(
      'rmt.weights.published',
      async (m, meta) => {
        running++;
        if (running > 1) overlap = true;
        if (m.version % 25 === 0) await sleep(2);
        running--;
        r.record(m, meta);
      },
      { filter: byRun(run) },
    );
    // More than one pull batch (256), so NatsBus has to ask the server again mid-stream.
    const N = 300;
    const weights = (version: number) => ({ ...samples(run)['rmt.weights.published'], version });
    await Promise.all(Array.from({ length: N }, (_, i) => bus.publish('rmt.weights.published', weights(i))));
    await r.waitFor(N);
    t.false(overlap);
    t.deepEqual(
      r.got.map((g) => g.msg.version),
      Array.from({ length: N }, (_, i) => i),
    );
    const seqs = r.got.map((g) => g.meta.seq);
    t.true(
      seqs.every((s, i) => i === 0 || s > seqs[i - 1]),
      'seq increases',
    );
  });

  test(t_("deliver 'all' replays retained history; 'new' starts after subscribe"), async (t) => {
    const { bus } = await make();
    t.teardown(() => bus.close());
    const run = uniq('replay');
    for (let i = 0; i < 5; i++) await bus.publish('rmt.metrics.step', metric(run, i));
    const all = recorder<'rmt.metrics.step'>();
    const fresh = recorder<'rmt.metrics.step'>();
    await bus.subscribe('rmt.metrics.step', all.record, { deliver: 'all', filter: byRun(run) });
    await bus.subscribe('rmt.metrics.step', fresh.record, { filter: byRun(run) });
    await bus.publish('rmt.metrics.step', metric(run, 5));
    await all.waitFor(6);
    await fresh.waitFor(1);
    await sleep(50);
    t.deepEqual(
      all.got.map((g) => g.msg.step),
      [0, 1, 2, 3, 4, 5],
    );
    t.deepEqual(
      fresh.got.map((g) => g.msg.step),
      [5],
    );
  });

  test(t_('a durable consumer resumes after unsubscribe without losing or repeating messages'), async (t) => {
    const { bus } = await make();
    t.teardown(() => bus.close());
    const run = uniq('durable');
    const durable = uniq('coordinator');
    const seen: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let entered!: () => void;
    const inHandler = new Promise<void>((r) => {
      entered = r;
    });
    const first = await bus.subscribe(
      'rmt.difficulty.observed',
      async (m) => {
        if (m.step === 2) {
          entered();
          await gate;
        }
        seen.push(m.step);
      },
      { durable, deliver: 'all', filter: byRun(run) },
    );
    const obs = (step: number) => ({ ...samples(run)['rmt.difficulty.observed'], step });
    for (let i = 0; i < 5; i++) await bus.publish('rmt.difficulty.observed', obs(i));
    await inHandler;
    // unsubscribe() waits for the handler in progress and acknowledges it.
    const stopped = first.unsubscribe();
    await sleep(20);
    release();
    await stopped;
    t.deepEqual(seen, [0, 1, 2]);
    // Published while nobody listens: kept for the durable.
    for (let i = 5; i < 8; i++) await bus.publish('rmt.difficulty.observed', obs(i));
    const r = recorder<'rmt.difficulty.observed'>();
    // deliver 'new' is ignored for an existing durable: it resumes where it acked.
    await bus.subscribe('rmt.difficulty.observed', r.record, { durable, deliver: 'new', filter: byRun(run) });
    await r.waitFor(5);
    await sleep(50);
    t.deepEqual(
      r.got.map((g) => g.msg.step),
      [3, 4, 5, 6, 7],
    );
    // A second live subscriber on the same durable would split or reorder the stream: refused.
    await t.throwsAsync(
      bus.subscribe('rmt.difficulty.observed', () => {}, { durable }),
      {
        message: /already has an active subscription/,
      },
    );
    // Durable names are per subject, so the same name works on another subject.
    const other = await bus.subscribe('rmt.metrics.step', () => {}, { durable });
    await other.unsubscribe();
  });

  test(t_('a throwing handler gets the message again, before any later message'), async (t) => {
    const { bus, logs } = await make();
    t.teardown(() => bus.close());
    const run = uniq('retry');
    const calls: { step: number; meta: DeliveryMeta }[] = [];
    let failures = 0;
    const r = recorder<'rmt.metrics.step'>();
    await bus.subscribe(
      'rmt.metrics.step',
      (m, meta) => {
        calls.push({ step: m.step, meta });
        if (m.step === 1 && failures < 2) {
          failures++;
          throw new Error('transient');
        }
        r.record(m, meta);
      },
      { filter: byRun(run) },
    );
    for (let i = 0; i < 4; i++) await bus.publish('rmt.metrics.step', metric(run, i));
    await r.waitFor(4);
    t.deepEqual(
      calls.map((c) => c.step),
      [0, 1, 1, 1, 2, 3],
    );
    t.deepEqual(
      calls.filter((c) => c.step === 1).map((c) => [c.meta.attempt, c.meta.redelivered]),
      [
        [1, false],
        [2, true],
        [3, true],
      ],
    );
    t.is(new Set(calls.filter((c) => c.step === 1).map((c) => c.meta.seq)).size, 1, 'same seq on redelivery');
    t.is(logs.filter((l) => l.level === 'warn' && /redelivering/.test(l.msg)).length, 2);
  });

  test(t_('a message whose handler keeps failing is dropped after maxAttempts'), async (t) => {
    const { bus, logs } = await make();
    t.teardown(() => bus.close());
    const run = uniq('poison');
    const calls: number[] = [];
    const r = recorder<'rmt.metrics.step'>();
    await bus.subscribe(
      'rmt.metrics.step',
      (m, meta) => {
        calls.push(m.step);
        if (m.step === 0) throw new Error('poison');
        r.record(m, meta);
      },
      { filter: byRun(run) },
    );
    await bus.publish('rmt.metrics.step', metric(run, 0));
    await bus.publish('rmt.metrics.step', metric(run, 1));
    await r.waitFor(1);
    t.deepEqual(calls, [0, 0, 0, 1]);
    t.true(logs.some((l) => l.level === 'error' && /failed 3 times; dropping/.test(l.msg)));
  });

  test(t_('malformed messages from a foreign publisher are logged and skipped'), async (t) => {
    const { bus, logs } = await make();
    t.teardown(() => bus.close());
    const run = uniq('foreign');
    const r = recorder<'rmt.metrics.step'>();
    const hb = recorder<'rmt.workers.heartbeat'>();
    await bus.subscribe('rmt.metrics.step', r.record, { filter: byRun(run) });
    await bus.subscribe('rmt.workers.heartbeat', hb.record, { filter: (m) => m.worker_id === run });
    await bus.publishUnchecked('rmt.metrics.step', '{not json');
    await bus.publishUnchecked('rmt.metrics.step', JSON.stringify({ run_id: run, step: -1, metrics: {} }));
    await bus.publishUnchecked('rmt.workers.heartbeat', JSON.stringify({ worker_id: run }));
    // Unknown fields are accepted on receipt: a newer publisher may add some.
    await bus.publishUnchecked('rmt.metrics.step', JSON.stringify({ ...metric(run, 1), extra: true }));
    await bus.publish('rmt.workers.heartbeat', { ...samples(run)['rmt.workers.heartbeat'] });
    await r.waitFor(1);
    await hb.waitFor(1);
    t.is(r.got[0].msg.step, 1);
    t.is(hb.got.length, 1);
    const dropped = logs.filter((l) => l.msg === 'dropping invalid message');
    t.true(dropped.length >= 2, JSON.stringify(logs));
    t.true(dropped.some((l) => /rmt\.workers\.heartbeat: field "address"/.test(String(l.fields?.error))));
  });

  test(t_('heartbeats are not persisted: a late subscriber sees only new ones'), async (t) => {
    const { bus } = await make();
    t.teardown(() => bus.close());
    const worker = uniq('hb');
    const beat = (ts: number) => ({ ...samples(worker)['rmt.workers.heartbeat'], ts });
    await bus.publish('rmt.workers.heartbeat', beat(1));
    await bus.publish('rmt.workers.heartbeat', beat(2));
    const r = recorder<'rmt.workers.heartbeat'>();
    await bus.subscribe('rmt.workers.heartbeat', r.record, { filter: (m) => m.worker_id === worker });
    await bus.publish('rmt.workers.heartbeat', beat(3));
    await r.waitFor(1);
    await sleep(50);
    t.deepEqual(
      r.got.map((g) => g.msg.ts),
      [3],
    );
    await t.throwsAsync(
      bus.subscribe('rmt.workers.heartbeat', () => {}, { deliver: 'all' }),
      {
        message: /not stored/,
      },
    );
    await t.throwsAsync(
      bus.subscribe('rmt.workers.heartbeat', () => {}, { durable: 'x' }),
      {
        message: /no durable/,
      },
    );
    await t.throwsAsync(
      bus.subscribe('rmt.metrics.step', () => {}, { durable: 'bad.name' }),
      {
        message: /durable name/,
      },
    );
  });

  test(t_('close drains: received messages are handled, then publishing is refused'), async (t) => {
    const { bus } = await make();
    const worker = uniq('drain');
    const handled: number[] = [];
    await bus.subscribe(
      'rmt.workers.heartbeat',
      async (m) => {
        await sleep(5);
        handled.push(m.ts);
      },
      { filter: (m) => m.worker_id === worker },
    );
    for (let i = 1; i <= 10; i++)
      await bus.publish('rmt.workers.heartbeat', { ...samples(worker)['rmt.workers.heartbeat'], ts: i });
    await bus.close();
    t.deepEqual(
      handled,
      Array.from({ length: 10 }, (_, i) => i + 1),
    );
    await t.throwsAsync(bus.publish('rmt.metrics.step', metric(worker, 1)), { message: /closed/ });
    await t.throwsAsync(
      bus.subscribe('rmt.metrics.step', () => {}),
      { message: /closed/ },
    );
    await bus.close();
  });

  test(t_('a handler may unsubscribe its own subscription'), async (t) => {
    const { bus } = await make();
    t.teardown(() => bus.close());
    const run = uniq('self');
    const seen: number[] = [];
    let sub: { unsubscribe(): Promise<void> } | null = null;
    let done!: () => void;
    const finished = new Promise<void>((r) => {
      done = r;
    });
    sub = await bus.subscribe(
      'rmt.metrics.step',
      async (m) => {
        seen.push(m.step);
        if (m.step === 1) {
          await sub?.unsubscribe();
          done();
        }
      },
      { filter: byRun(run) },
    );
    for (let i = 0; i < 4; i++) await bus.publish('rmt.metrics.step', metric(run, i));
    await finished;
    await sleep(50);
    t.deepEqual(seen, [0, 1]);
  });
}

// --- NATS specifics ---------------------------------------------------------------------------

test('nats: a durable resumes on a new connection, also after close() during a handler', async (t) => {
  const run = uniq('reconnect');
  const durable = uniq('coord');
  const a = await KINDS.nats();
  const seen: number[] = [];
  let entered!: () => void;
  const inHandler = new Promise<void>((r) => {
    entered = r;
  });
  await a.bus.subscribe(
    'rmt.metrics.step',
    async (m) => {
      if (m.step === 1) {
        entered();
        await sleep(100);
      }
      seen.push(m.step);
    },
    { durable, deliver: 'all', filter: byRun(run) },
  );
  for (let i = 0; i < 4; i++) await a.bus.publish('rmt.metrics.step', metric(run, i));
  await inHandler;
  await a.bus.close();
  t.deepEqual(seen, [0, 1]);
  const b = await KINDS.nats();
  t.teardown(() => b.bus.close());
  const r = recorder<'rmt.metrics.step'>();
  await b.bus.subscribe('rmt.metrics.step', r.record, { durable, filter: byRun(run) });
  await r.waitFor(2);
  await sleep(50);
  t.deepEqual(
    r.got.map((g) => g.msg.step),
    [2, 3],
  );
  t.false(r.got[0].meta.redelivered);
});

test('nats: subscriptions survive a server restart (the client reconnects, the pull loop re-pulls)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rmt-bus-restart-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let server = await startNatsServer({ storeDir: dir });
  t.teardown(() => server.stop());
  const { logger, logs } = capture();
  const bus = await NatsBus.connect({ servers: server.url, name: 'restart', logger });
  t.teardown(() => bus.close());
  const run = uniq('restart');
  const r = recorder<'rmt.metrics.step'>();
  await bus.subscribe('rmt.metrics.step', r.record, {
    durable: 'coordinator',
    deliver: 'all',
    filter: byRun(run),
  });
  await bus.publish('rmt.metrics.step', metric(run, 0));
  await r.waitFor(1);
  // Acks are fire-and-forget: stopping the server before it recorded this one would (correctly)
  // redeliver message 0, which is not what this test is about.
  const durableName = consumerName('coordinator', 'rmt.metrics.step');
  while ((await bus.jsm.consumers.info(STREAM_NAME, durableName)).ack_floor.stream_seq < r.got[0].meta.seq) {
    await sleep(10);
  }
  await server.stop();
  server = await startNatsServer({ storeDir: dir, port: server.port });
  // Sent before the client has reconnected: publish() waits for the connection instead of losing it.
  await bus.publish('rmt.metrics.step', metric(run, 1));
  await r.waitFor(2);
  t.deepEqual(
    r.got.map((g) => g.msg.step),
    [0, 1],
  );
  t.true(logs.some((l) => /reconnected/.test(l.msg)));
});

test('nats: services connecting at once share one stream with every persisted subject', async (t) => {
  const buses = await Promise.all(
    [1, 2, 3].map((i) => NatsBus.connect({ servers: nats.url, name: `svc-${i}`, logger: capture().logger })),
  );
  t.teardown(() => Promise.all(buses.map((b) => b.close())));
  const info = await buses[0].jsm.streams.info(STREAM_NAME);
  t.deepEqual([...(info.config.subjects ?? [])].sort(), [...PERSISTED_SUBJECTS].sort());
  t.is(info.config.storage, StorageType.File);
  const names: string[] = [];
  for await (const s of buses[0].jsm.streams.names()) names.push(s);
  t.is(names.filter((n) => n === STREAM_NAME).length, 1);
});

test('nats: a durable is a JetStream consumer with one message in flight', async (t) => {
  const { bus } = await KINDS.nats();
  t.teardown(() => bus.close());
  const durable = uniq('learner');
  const sub = await bus.subscribe('rmt.weights.published', () => {}, { durable });
  const ci = await (bus as NatsBus).jsm.consumers.info(
    STREAM_NAME,
    consumerName(durable, 'rmt.weights.published'),
  );
  t.is(ci.config.filter_subject, 'rmt.weights.published');
  t.is(ci.config.max_ack_pending, 1);
  t.is(ci.config.ack_policy, AckPolicy.Explicit);
  await sub.unsubscribe();
});

test('nats: an unreachable server gives an Error naming it', async (t) => {
  const { createServer } = await import('node:net');
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  const url = `nats://127.0.0.1:${port}`;
  await t.throwsAsync(NatsBus.connect({ servers: url, name: 'x', connectTimeoutMs: 1000 }), {
    message: new RegExp(`NATS server ${url.replace(/[.]/g, '\\.')} could not be reached`),
  });
});

test('createBus picks the adapter from the URL', async (t) => {
  const inproc = await createBus(undefined);
  t.true(inproc instanceof InProcessBus);
  await inproc.close();
  t.true((await createBus('inproc')) instanceof InProcessBus);
  const n = await createBus(nats.url, { name: 'factory', logger: capture().logger });
  t.true(n instanceof NatsBus);
  await n.close();
  await t.throwsAsync(createBus('redis://localhost'), { message: /expected 'inproc' or nats:\/\// });
});

test('validate: strict at publish, lenient on receipt; positionChunks covers every position once', (t) => {
  const m = { run_id: 'r', step: 1, metrics: { a: 1 }, extra: 1 };
  t.throws(() => validate('rmt.metrics.step', m), { message: /"extra" is not part of the schema/ });
  t.is(validate('rmt.metrics.step', m, { strict: false }), m as never);
  t.throws(() => validate('rmt.metrics.step', null), {
    message: /rmt\.metrics\.step: message must be an object/,
  });
  const ps = Array.from({ length: 10 }, (_, i) => ({ id: i, entropy: i / 10 }));
  const chunks = positionChunks('r', 'held_out', ps, 4);
  t.deepEqual(
    chunks.map((c) => [c.chunk, c.chunks, c.positions.length]),
    [
      [0, 3, 4],
      [1, 3, 4],
      [2, 3, 2],
    ],
  );
  for (const c of chunks) validate('rmt.positions.scored', c);
  const empty = positionChunks('r', 'train', []);
  t.deepEqual(empty, [{ run_id: 'r', split: 'train', chunk: 0, chunks: 1, positions: [] }]);
  validate('rmt.positions.scored', empty[0]);
});
