import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { CoordinatorHost } from '../services/coordinator/service.js';
import { InProcessBus } from '../shared/bus/in-process.js';
import { createBackend } from '../shared/kernels/index.js';
import { WorkerRegistry } from '../shared/rpc/adapters/worker-registry.js';
import { DataRoot } from '../shared/run/data-root.js';
import { LearnerHost, LocalEndpoint } from '../shared/run/local.js';
import { RolloutWorker } from '../shared/run/rollout-worker.js';
import { RUN_RECORDS_DIR, RunRecords } from '../shared/run/run-records.js';
import { Scorer } from '../shared/run/scorer.js';
import { WorkerPool } from '../shared/run/worker-pool.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// A coordinator notes the run it drives under its data root; the next coordinator (a new
// CoordinatorHost, as after a restart) resumes a run the previous one was driving when it was told
// to go (SIGTERM), and not one a person stopped (StopRun, Ctrl-C).
const root = mkdtempSync(join(tmpdir(), 'rmt-coordinator-records-'));
const base = tinyBaseCheckpoint(root);
const backend = await createBackend('cpu');
const bus = new InProcessBus();
const learner = new LearnerHost(backend);
test.after.always(async () => {
  learner.release();
  await bus.close();
  await backend.dispose();
  rmSync(root, { recursive: true, force: true });
});

const T = 4;
const dataRoot = new DataRoot(root);
const records = new RunRecords(dataRoot, 1 << 20);
const recordOf = (runId: string) => join(dataRoot.dir, RUN_RECORDS_DIR, `${runId}.json`);

function coordinatorHost(onStep?: (step: number) => void): CoordinatorHost {
  const endpoint = new LocalEndpoint(new RolloutWorker('embedded', learner, bus));
  return new CoordinatorHost({
    bus,
    registry: new WorkerRegistry(5000),
    root: dataRoot,
    records,
    log: () => {},
    onStep: (step) => onStep?.(step),
    services: () => ({
      scorer: new Scorer(backend),
      learner,
      pool: new WorkerPool(() => [endpoint], { jobTimeoutMs: 60_000, workerWaitMs: 10_000, maxAttempts: 1 }),
    }),
  });
}

const request = (name: string, runId = '') => ({
  config: JSON.stringify(
    tinyRunConfig(base, join(root, name), 'rmt', T, { checkpoint: { every: 1, keep: 2 } }),
  ),
  method: '',
  steps: 0,
  outDir: '',
  runId,
});

test.serial(
  'a run stopped by SIGTERM is resumed by the next coordinator; one a person stopped is not',
  async (t) => {
    let first: CoordinatorHost | null = null;
    let stopping: Promise<void> | null = null;
    first = coordinatorHost((step) => {
      if (step === 2) stopping ??= first!.stopAll({ resumeLater: true });
    });
    const started = first.start(request('resumed', 'resumed'));
    t.true(existsSync(recordOf('resumed')), 'noted while it runs');
    // The same run asked for again is the run going; another one is refused while it goes.
    t.is(first.start(request('resumed')).runId, 'resumed');
    t.throws(() => first!.start(request('other')), { message: /"resumed" is still active/ });
    await first.find(started.runId).done;
    await stopping;
    t.is(first.find('resumed').coordinator.status().state, 'stopped');
    t.true(existsSync(recordOf('resumed')), 'kept for the next coordinator');

    const second = coordinatorHost();
    t.deepEqual(second.resumeRecorded(), ['resumed']);
    await second.find('resumed').done;
    const s = second.find('resumed').coordinator.status();
    t.is(s.state, 'done', s.error);
    t.is(s.step, T);
    const steps = readFileSync(join(root, 'resumed', 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l).step);
    t.deepEqual(steps, [1, 2, 3, 4], 'every step once across the two coordinators');
    t.false(existsSync(recordOf('resumed')), 'crossed off once finished');

    // StopRun: a person's stop; nothing is left for a next coordinator.
    const third = coordinatorHost();
    const run = third.start(request('stopped', 'stopped'));
    const a = third.find(run.runId);
    a.stop.abort();
    await a.done;
    t.false(existsSync(recordOf('stopped')));
    t.deepEqual(coordinatorHost().resumeRecorded(), []);
    await third.stopAll();
    await second.stopAll();
  },
);

test.serial('a run started again under another id replaces the record of its folder', async (t) => {
  const first = coordinatorHost();
  first.start(request('renamed', 'old-id'));
  await first.stopAll({ resumeLater: true });
  t.true(existsSync(recordOf('old-id')));
  const second = coordinatorHost();
  second.start(request('renamed', 'new-id'));
  t.false(existsSync(recordOf('old-id')), 'one record per folder');
  t.true(existsSync(recordOf('new-id')));
  await second.stopAll();
  t.false(existsSync(recordOf('new-id')));
});
