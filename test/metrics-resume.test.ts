import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { InProcessBus } from '../shared/bus/in-process.js';
import type { TrainConfig } from '../shared/config/train-config.js';
import { createBackend } from '../shared/kernels/index.js';
import { checkpointDir, listCheckpoints } from '../shared/model/checkpoint.js';
import { RunCoordinator } from '../shared/run/coordinator.js';
import { LearnerHost, LocalEndpoint } from '../shared/run/local.js';
import { RolloutWorker } from '../shared/run/rollout-worker.js';
import { Scorer } from '../shared/run/scorer.js';
import { WorkerPool } from '../shared/run/worker-pool.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// metrics.jsonl is the run's history: a coordinator that starts a run again keeps every row up to
// the step the learner continues from, replaces the rows after it, and removes nothing when the
// learner refuses to continue where it was asked to.
const root = mkdtempSync(join(tmpdir(), 'rmt-metrics-resume-'));
const base = tinyBaseCheckpoint(root);
const backend = await createBackend('cpu');
test.after.always(async () => {
  await backend.dispose();
  rmSync(root, { recursive: true, force: true });
});

const T = 4;
const cfg: TrainConfig = tinyRunConfig(base, join(root, 'run'), 'rmt', T, {
  checkpoint: { every: 2, keep: 3 },
});
const jsonl = join(cfg.run.out_dir, 'metrics.jsonl');
const lines = () => readFileSync(jsonl, 'utf8').trim().split('\n');

/** A coordinator over the in-process services, with the learner host given (one per learner process). */
function coordinator(host: LearnerHost, bus: InProcessBus): RunCoordinator {
  const endpoint = new LocalEndpoint(new RolloutWorker('embedded', host, bus));
  const pool = new WorkerPool(() => [endpoint], {
    jobTimeoutMs: 60_000,
    workerWaitMs: 10_000,
    maxAttempts: 1,
    log: () => {},
  });
  return new RunCoordinator(
    'run',
    cfg,
    { scorer: new Scorer(backend), learner: host, pool, bus },
    { log: () => {} },
  );
}

test.serial(
  'a restarted coordinator whose learner still holds the run continues from its real step and removes no row',
  async (t) => {
    const bus = new InProcessBus();
    const host = new LearnerHost(backend);
    t.teardown(async () => {
      host.release();
      await bus.close();
    });
    const first = await coordinator(host, bus).run();
    t.is(first.steps, T);
    const before = readFileSync(jsonl, 'utf8');
    t.is(lines().length, T);
    // The learner still holds the run at step T (its last checkpoint): a new coordinator is told
    // that step with the state stored there, not the step the learner first loaded, and has
    // nothing left to train.
    const again = coordinator(host, bus);
    const second = await again.run();
    t.is(second.steps, T);
    t.is(again.status().state, 'done');
    t.is(readFileSync(jsonl, 'utf8'), before, 'metrics.jsonl is byte for byte what the first run wrote');
  },
);

test.serial(
  'a run resumed from an earlier checkpoint keeps the rows up to it and replaces the rest',
  async (t) => {
    // Continues the run above: drop the newest checkpoints so the newest left is step 2, as when a
    // learner dies after logging steps 3-4 but before checkpointing them.
    for (const dir of listCheckpoints(cfg.run.out_dir)) {
      if (dir !== checkpointDir(cfg.run.out_dir, 2)) rmSync(dir, { recursive: true, force: true });
    }
    t.deepEqual(listCheckpoints(cfg.run.out_dir), [checkpointDir(cfg.run.out_dir, 2)]);
    // Mark every row, to tell kept rows from rewritten ones.
    const marked = lines().map((l) => JSON.stringify({ ...JSON.parse(l), marker: 1 }));
    writeFileSync(jsonl, `${marked.join('\n')}\n`);

    const bus = new InProcessBus();
    const host = new LearnerHost(backend);
    t.teardown(async () => {
      host.release();
      await bus.close();
    });
    const resumed = await coordinator(host, bus).run();
    t.is(resumed.steps, T);
    const after = lines();
    t.deepEqual(
      after.map((l) => JSON.parse(l).step),
      [1, 2, 3, 4],
      'every step exactly once',
    );
    t.deepEqual(after.slice(0, 2), marked.slice(0, 2), 'rows up to the checkpoint kept as they were');
    t.true(
      after.slice(2).every((l) => !('marker' in JSON.parse(l))),
      'rows after it written again',
    );
    // The steps redone are the same steps: same losses as the first attempt logged.
    for (const i of [2, 3]) {
      t.is(JSON.parse(after[i])['actor/pg_loss'], JSON.parse(marked[i])['actor/pg_loss'], `step ${i + 1}`);
    }
  },
);
