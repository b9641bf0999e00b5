import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { InProcessBus } from '../shared/bus/in-process.js';
import { createBackend } from '../shared/kernels/index.js';
import { checkpointDir } from '../shared/model/checkpoint.js';
import { RunCoordinator } from '../shared/run/coordinator.js';
import { LearnerHost, LocalEndpoint } from '../shared/run/local.js';
import { RolloutWorker } from '../shared/run/rollout-worker.js';
import { Scorer } from '../shared/run/scorer.js';
import { WorkerPool } from '../shared/run/worker-pool.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// The learner holds a run for the coordinator that started it, under a lease its calls renew: a
// second coordinator is refused while the lease runs, and once it has run out (the first one is
// gone) the run is let go and loaded again from its newest checkpoint by whoever asks next.
const root = mkdtempSync(join(tmpdir(), 'rmt-learner-lease-'));
const base = tinyBaseCheckpoint(root);
const backend = await createBackend('cpu');
test.after.always(async () => {
  await backend.dispose();
  rmSync(root, { recursive: true, force: true });
});

const T = 3;
const cfg = tinyRunConfig(base, join(root, 'run'), 'rmt', T, { checkpoint: { every: 2, keep: 3 } });

test('a run is held for its coordinator until the lease runs out, then loaded again from its newest checkpoint', async (t) => {
  const expired: string[] = [];
  const host = new LearnerHost(backend, undefined, {
    leaseS: 0.4,
    onLeaseExpired: (runId) => expired.push(runId),
  });
  const bus = new InProcessBus();
  t.teardown(async () => {
    host.close();
    host.release();
    await bus.close();
  });
  const endpoint = new LocalEndpoint(new RolloutWorker('embedded', host, bus));
  const pool = new WorkerPool(() => [endpoint], {
    jobTimeoutMs: 60_000,
    workerWaitMs: 10_000,
    maxAttempts: 1,
  });
  // Stopped after its second step: the learner holds the run at step 2 (its checkpoint) for "first".
  const stop = new AbortController();
  const first = new RunCoordinator(
    'run',
    cfg,
    { scorer: new Scorer(backend), learner: host, pool, bus },
    { log: () => {}, holder: 'first', signal: stop.signal, onStep: (s) => s === 2 && stop.abort() },
  );
  t.is((await first.run()).steps, 2);
  const ref = { runId: 'run', cfg };
  // The holder asking again hears where the learner is: step 2 with the state of its checkpoint.
  const again = await host.init({ ...ref, holder: 'first' });
  t.is(again.step, 2);
  t.is(again.resumedFrom, checkpointDir(cfg.run.out_dir, 2));
  t.truthy(again.extra?.rng);
  t.is(again.leaseS, 0.4);
  // Another coordinator is refused while the lease runs, for every call.
  await t.throwsAsync(host.init({ ...ref, holder: 'second' }), { message: /held by another coordinator/ });
  await t.throwsAsync(host.renew({ runId: 'run', holder: 'second' }), {
    message: /not held for this coordinator/,
  });
  await t.throwsAsync(host.checkpoint({ ...ref, holder: 'second' }, { rng: [1, 2, 3, 4] }), {
    message: /held by another coordinator/,
  });
  t.is((await host.renew({ runId: 'run', holder: 'first' })).step, 2);
  // The first coordinator goes quiet: the run is let go after the lease.
  await new Promise((r) => setTimeout(r, 700));
  host.expire();
  t.deepEqual(expired, ['run']);
  t.is(host.active, null);
  // The second one loads it from its newest checkpoint and finishes it.
  const second = new RunCoordinator(
    'run',
    cfg,
    { scorer: new Scorer(backend), learner: host, pool, bus },
    { log: () => {}, holder: 'second' },
  );
  const done = await second.run();
  t.is(done.steps, T);
  t.is(second.status().state, 'done');
});
