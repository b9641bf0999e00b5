import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { CoordinatorHost, coordinatorService } from '../services/coordinator/service.js';
import { rolloutService } from '../services/rollout/service.js';
import { InProcessBus } from '../shared/bus/in-process.js';
import { createBackend } from '../shared/kernels/index.js';
import { loadCheckpoint } from '../shared/model/checkpoint.js';
import { Decoder } from '../shared/model/decoder.js';
import { uploadParams } from '../shared/model/weights.js';
import { runRefToPb, settingsToPb } from '../shared/rpc/adapters/convert.js';
import { WorkerRegistry } from '../shared/rpc/adapters/worker-registry.js';
import { coordinatorClient, rolloutClient } from '../shared/rpc/client.js';
import { Status } from '../shared/rpc/errors.js';
import { startServer } from '../shared/rpc/server.js';
import { LearnerHost, LocalEndpoint } from '../shared/run/local.js';
import type { PolicySource } from '../shared/run/policy.js';
import { RolloutWorker } from '../shared/run/rollout-worker.js';
import { loadRunContext, RunContexts } from '../shared/run/run-context.js';
import { Scorer } from '../shared/run/scorer.js';
import { WorkerPool } from '../shared/run/worker-pool.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// Nothing a client does leaves work running or memory held after it is gone: a cancelled
// generation stops, a closed WatchRun stream leaves no listener, a finished run is let go.
const root = mkdtempSync(join(tmpdir(), 'rmt-sec-leaks-'));
const base = tinyBaseCheckpoint(root);
const backend = await createBackend('cpu');
const bus = new InProcessBus();
test.after.always(async () => {
  await bus.close();
  await backend.dispose();
  rmSync(root, { recursive: true, force: true });
});

/** The tiny base model, with a hook run before each of its forward passes. */
function hookedPolicy(before: (calls: number) => Promise<void> | void): {
  policy: PolicySource;
  calls: () => number;
} {
  const ck = loadCheckpoint(base);
  const model = new Decoder(ck.config, backend, uploadParams(backend, ck.params));
  let n = 0;
  const forwardCached = model.forwardCached.bind(model);
  model.forwardCached = async (...args: Parameters<Decoder['forwardCached']>) => {
    n++;
    await before(n);
    return forwardCached(...args);
  };
  return { policy: { acquire: async () => ({ model, version: 0 }) }, calls: () => n };
}

const cfg = tinyRunConfig(base, join(root, 'gen'), 'rmt', 2, { budget: { B_0: 8, hard_cap: 40 } });
const position = {
  id: 7,
  context: [11, 12, 13, 14, 15, 16, 17, 18],
  target: 20,
  continuation: [20, 21, 22],
  entropy: 2,
};
// Stop tokens cannot end generation early: a long hard cap and no stop token in reach of a random model
// would still be a race, so the checks count forward passes after the cancel, not wall time.
const settings = {
  G: 2,
  temperature: 1,
  budget: 8,
  stateBudget: true,
  hardCap: 40,
  rewardKind: 'match' as const,
  maxBatch: 4,
};

test.serial('a cancelled generation stops within a decode step and the worker is free again', async (t) => {
  const stop = new AbortController();
  const { policy, calls } = hookedPolicy((n) => {
    if (n === 3) stop.abort();
  });
  const worker = new RolloutWorker('w', policy);
  const ctx = await loadRunContext('gen', cfg);
  const job = { runId: 'gen', step: 0, index: 0, positions: [position], settings, seed: 1, minVersion: 0 };
  await t.throwsAsync(worker.generate(ctx, job, stop.signal), { any: true });
  t.true(calls() <= 4, `forward passes after the cancel: ${calls() - 3}`);
  t.false(worker.status().busy);
  const again = await worker.generate(ctx, job);
  t.is(again.groups.length, 1, 'the next job runs');
});

test.serial('GenerateRollouts: a client that cancels frees the worker within a decode step', async (t) => {
  const client = new AbortController();
  const { policy, calls } = hookedPolicy(async (n) => {
    if (n === 3) {
      client.abort();
      // Time for the cancel to reach the server before the next pass.
      await sleep(300);
    }
  });
  const worker = new RolloutWorker('w', policy);
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    services: [rolloutService({ worker, address: () => 'here', backend: 'cpu' })],
  });
  const rollout = rolloutClient(server.address);
  t.teardown(async () => {
    rollout.close();
    await server.shutdown(100);
  });
  const stream = rollout.generateRollouts(
    {
      run: runRefToPb({ runId: 'gen', cfg }),
      positions: [position],
      settings: settingsToPb(settings),
      seed: 1,
    },
    { signal: client.signal },
  );
  const err = (await (async () => {
    for await (const _ of stream) {
    }
  })().then(
    () => null,
    (e: unknown) => e,
  )) as { code?: number; name?: string } | null;
  t.truthy(err, 'the call ended early');
  for (let i = 0; i < 50 && worker.status().busy; i++) await sleep(20);
  t.false(worker.status().busy, 'the worker is free');
  t.true(calls() <= 4, `forward passes after the cancel: ${calls() - 3}`);
});

function embeddedHost(o: { finishedRunsKept?: number; finishedRunTtlS?: number; gate?: Promise<void> } = {}) {
  const { gate, ...limits } = o;
  const scorer = new Scorer(backend);
  const learner = new LearnerHost(backend);
  const endpoint = new LocalEndpoint(new RolloutWorker('embedded', learner, bus));
  const host = new CoordinatorHost({
    bus,
    registry: new WorkerRegistry(5000),
    log: () => {},
    ...limits,
    services: (c) => ({
      // The run waits for `gate` before scoring (so that clients can attach first).
      scorer: {
        keyPositions: async (...a: Parameters<Scorer['keyPositions']>) => {
          await gate;
          return scorer.keyPositions(...a);
        },
      },
      learner,
      pool: new WorkerPool(() => [endpoint], {
        jobTimeoutMs: c.distributed.job_timeout_s * 1000,
        workerWaitMs: 1000,
        maxAttempts: 1,
      }),
    }),
  });
  return { host, learner };
}

test.serial('WatchRun: many streams over a whole run leave no listener behind', async (t) => {
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
  process.on('warning', onWarning);
  let open = () => {};
  const { host, learner } = embeddedHost({ gate: new Promise<void>((r) => (open = r)) });
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    services: [coordinatorService(host, new WorkerRegistry(5000))],
  });
  const coordinator = coordinatorClient(server.address);
  t.teardown(async () => {
    process.off('warning', onWarning);
    coordinator.close();
    await server.shutdown(100);
    learner.release();
  });
  const steps = 12;
  const run = tinyRunConfig(base, join(root, 'watched'), 'rmt', steps, {
    checkpoint: { every: 100, keep: 1 },
  });
  const started = await coordinator.startRun({ config: JSON.stringify(run), runId: 'watched' });
  const a = host.runs.get(started.runId)!;
  // 20 streams to the end (statuses between two reads are coalesced), 10 more that the client closes after their second status.
  const full = Array.from({ length: 20 }, async () => {
    let last = -1;
    for await (const s of coordinator.watchRun({ runId: 'watched' })) last = s.step;
    return last;
  });
  const early = Array.from({ length: 10 }, async () => {
    let n = 0;
    for await (const _ of coordinator.watchRun({ runId: 'watched' })) if (++n === 2) break;
    return n;
  });
  // The run computes in this process and starves its I/O: it starts once every stream is attached.
  while (a.watchers.size < 30) await sleep(20);
  open();
  const counts = await Promise.all([...full, ...early]);
  await a.done;
  t.is(a.coordinator.status().state, 'done');
  t.deepEqual(counts.slice(0, 20), Array(20).fill(steps), 'every stream followed the run to its end');
  await sleep(100);
  t.is(a.watchers.size, 0, 'no watcher left on the run');
  t.deepEqual(
    warnings.filter((w) => /MaxListeners|memory leak/i.test(w)),
    [],
  );
});

test.serial(
  'finished runs are let go: at most finished_runs_kept, none older than finished_run_ttl_s',
  async (t) => {
    const { host, learner } = embeddedHost({ finishedRunsKept: 3, finishedRunTtlS: 0.5 });
    const server = await startServer({
      host: '127.0.0.1',
      port: 0,
      services: [coordinatorService(host, new WorkerRegistry(5000))],
    });
    const coordinator = coordinatorClient(server.address);
    t.teardown(async () => {
      coordinator.close();
      await server.shutdown(100);
      learner.release();
    });
    // Runs that fail at once (no key position passes the entropy filter), each with a big config.
    const padding = 'p'.repeat(200_000);
    for (let i = 0; i < 6; i++) {
      const c = tinyRunConfig(base, join(root, `failing-${i}`), 'rmt', 2, {
        curriculum: { min_entropy: 100, edges: [200, 300] },
        prompt: { budget_marker: ` budget {B}:${padding}` },
      });
      const s = await coordinator.startRun({ config: JSON.stringify(c), runId: `failing-${i}` });
      await host.runs.get(s.runId)?.done;
    }
    t.true(host.runs.size <= 3, `runs held: ${host.runs.size}`);
    const first = (await coordinator.getRunStatus({ runId: 'failing-0' }).then(
      () => null,
      (e: unknown) => e,
    )) as { code: number } | null;
    t.is(first?.code, Status.NOT_FOUND, 'the oldest run is forgotten');
    const last = await coordinator.getRunStatus({ runId: 'failing-5' });
    t.truthy(last.error, 'the newest is still answered for');
    await sleep(700);
    const expired = (await coordinator.getRunStatus({ runId: 'failing-5' }).then(
      () => null,
      (e: unknown) => e,
    )) as { code: number } | null;
    t.is(expired?.code, Status.NOT_FOUND, 'and forgotten after its time');
    t.is(host.runs.size, 0);
  },
);

test.serial('services keep a bounded number of runs loaded, the least recently used let go', async (t) => {
  const contexts = new RunContexts({ kept: 2 });
  for (let i = 0; i < 5; i++) {
    await contexts.get(`run-${i}`, JSON.stringify(tinyRunConfig(base, join(root, `ctx-${i}`), 'rmt', 2)));
  }
  t.is(contexts.size, 2);
  // A run let go is loaded again from the config its next request carries.
  const again = await contexts.get(
    'run-0',
    JSON.stringify(tinyRunConfig(base, join(root, 'ctx-0'), 'rmt', 2)),
  );
  t.is(again.runId, 'run-0');
  t.is(contexts.size, 2);
});
