import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test from 'ava';
import { InProcessBus } from '../shared/bus/in-process.js';
import type { TrainConfig } from '../shared/config/train-config.js';
import { createBackend } from '../shared/kernels/index.js';
import { type CoordinatorOptions, RunCoordinator, type RunStatusView } from '../shared/run/coordinator.js';
import type { LearnerApi } from '../shared/run/interfaces.js';
import { LearnerHost, LocalEndpoint } from '../shared/run/local.js';
import { RolloutWorker } from '../shared/run/rollout-worker.js';
import { Scorer } from '../shared/run/scorer.js';
import { WorkerPool } from '../shared/run/worker-pool.js';
import { metricsRows, trajectory } from './helpers/run-metrics.js';
import { tinyBaseCheckpoint, tinyRunConfig } from './helpers/tiny-run.js';

// The coordinator's side of a learner that goes away, in one process: a learner behind a switch
// that makes every call fail as an unreachable one would. The run waits (state and reason), and
// goes on by itself when the learner is back, from wherever the learner came back.
const root = mkdtempSync(join(tmpdir(), 'rmt-learner-link-'));
const base = tinyBaseCheckpoint(root);
const backend = await createBackend('cpu');
test.after.always(async () => {
  await backend.dispose();
  rmSync(root, { recursive: true, force: true });
});

const T = 6;
const config = (name: string): TrainConfig =>
  tinyRunConfig(base, join(root, name), 'rmt', T, { checkpoint: { every: 2, keep: 2 } });
const rowsOf = (cfg: TrainConfig) => metricsRows(cfg.run.out_dir);

class Unreachable extends Error {}

/** A learner whose every call fails while `down`; a restart drops what it held since its last checkpoint. */
class SwitchedLearner implements LearnerApi {
  down = false;
  constructor(readonly host: LearnerHost) {}
  private gate<T>(f: () => Promise<T>): Promise<T> {
    return this.down ? Promise.reject(new Unreachable('connect ECONNREFUSED')) : f();
  }
  init: LearnerApi['init'] = (run) => this.gate(() => this.host.init(run));
  trainStep: LearnerApi['trainStep'] = (...a) => this.gate(() => this.host.trainStep(...a));
  checkpoint: LearnerApi['checkpoint'] = (...a) => this.gate(() => this.host.checkpoint(...a));
  saveFinal: LearnerApi['saveFinal'] = (run) => this.gate(() => this.host.saveFinal(run));
  renew: NonNullable<LearnerApi['renew']> = (run) => this.gate(() => this.host.renew(run));
}

function coordinator(cfg: TrainConfig, learner: SwitchedLearner, bus: InProcessBus, o: CoordinatorOptions) {
  const endpoint = new LocalEndpoint(new RolloutWorker('embedded', learner.host, bus));
  const pool = new WorkerPool(() => [endpoint], {
    jobTimeoutMs: 60_000,
    workerWaitMs: 10_000,
    maxAttempts: 1,
  });
  return new RunCoordinator(
    'run',
    cfg,
    { scorer: new Scorer(backend), learner, pool, bus },
    {
      log: process.env.LINK_DEBUG ? (l: string) => console.error(l) : () => {},
      learnerFault: (e) => (e instanceof Unreachable ? 'away' : 'other'),
      learnerRetryMaxMs: 50,
      ...o,
    },
  );
}

test.serial(
  'a learner away mid-run, back from its last checkpoint: the run waits, then redoes the steps after it',
  async (t) => {
    const bus = new InProcessBus();
    const reference = config('reference');
    const refHost = new LearnerHost(backend);
    const c0 = coordinator(reference, new SwitchedLearner(refHost), bus, {});
    await c0.run();
    refHost.release();

    const cfg = config('away');
    const host = new LearnerHost(backend);
    const learner = new SwitchedLearner(host);
    t.teardown(async () => {
      host.release();
      await bus.close();
    });
    const seen: RunStatusView[] = [];
    let fired = false;
    const c = coordinator(cfg, learner, bus, {
      onStatus: (s) => seen.push(s),
      // After step 3 (one past the checkpoint at 2) the learner goes, and comes back restarted.
      onStep: (step) => {
        if (step !== 3 || fired) return;
        fired = true;
        learner.down = true;
        setTimeout(() => {
          host.release();
          learner.down = false;
        }, 300);
      },
    });
    const summary = await c.run();
    t.is(summary.steps, T);
    const waiting = seen.find((s) => s.state === 'waiting');
    t.truthy(waiting, 'the run waited');
    t.regex(waiting!.reason, /learner unavailable \(connect ECONNREFUSED\)/);
    t.is(c.status().state, 'done');
    t.is(c.status().reason, '');
    const rows = rowsOf(cfg);
    t.deepEqual(
      rows.map((r) => r.step),
      [1, 2, 3, 4, 5, 6],
      'every step once',
    );
    t.deepEqual(trajectory(rows), trajectory(rowsOf(reference)), 'the numbers of the run without the fault');
  },
);

test.serial('a run waiting for its learner stops when asked to, with nothing left waiting', async (t) => {
  const bus = new InProcessBus();
  const host = new LearnerHost(backend);
  const learner = new SwitchedLearner(host);
  learner.down = true;
  t.teardown(async () => {
    host.release();
    await bus.close();
  });
  const stop = new AbortController();
  const c = coordinator(config('stopped'), learner, bus, {
    signal: stop.signal,
    onStatus: (s) => {
      if (s.state === 'waiting') setTimeout(() => stop.abort(), 100);
    },
  });
  const summary = await c.run();
  t.is(summary.steps, 0);
  t.is(c.status().state, 'stopped');
  t.is(c.status().reason, '');
});
