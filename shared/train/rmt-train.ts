import { basename, resolve } from 'node:path';
import { InProcessBus } from '../bus/in-process.js';
import type { TrainConfig } from '../config/train-config.js';
import { createBackend } from '../kernels/index.js';
import { RunCoordinator, type TrainSummary as RunSummary } from '../run/coordinator.js';
import { LearnerHost, LocalEndpoint } from '../run/local.js';
import { RolloutWorker } from '../run/rollout-worker.js';
import { Scorer } from '../run/scorer.js';
import { WorkerPool } from '../run/worker-pool.js';
import { type LineLog, stderrLog } from '../run-dir/run-dir.js';

export { evalBudget, evalSubset } from '../run/coordinator.js';

/**
 * `rmt train`: the whole RMT loop in one process (docs/method.md sections 1-6), through the same service
 * interfaces the distributed run uses: the coordinator's loop (shared/run/coordinator.ts) drives a
 * scorer, one rollout worker and the learner living in this process, with the in-process event bus
 * carrying difficulty observations. The worker samples from the learner's own model, so nothing is
 * copied between them. Methods differ only through their row of METHOD_TABLE.
 */
export interface TrainOptions {
  log?: LineLog;
  signal?: AbortSignal;
  onStep?: (step: number, metrics: Record<string, number>) => void;
}

export interface TrainSummary extends RunSummary {
  backend: string;
}

export async function train(cfg: TrainConfig, opts: TrainOptions = {}): Promise<TrainSummary> {
  const log = opts.log ?? stderrLog;
  const backend = await createBackend(cfg.run.backend as Parameters<typeof createBackend>[0]);
  log(`method ${cfg.method} on backend ${backend.name}`);
  const bus = new InProcessBus();
  const learner = new LearnerHost(backend);
  const endpoint = new LocalEndpoint(new RolloutWorker('embedded', learner, bus));
  const pool = new WorkerPool(() => [endpoint], {
    jobTimeoutMs: cfg.distributed.job_timeout_s * 1000,
    workerWaitMs: cfg.distributed.worker_wait_s * 1000,
    // One worker in-process: a failure is a bug to report, not a worker to route around.
    maxAttempts: 1,
    log,
  });
  const coordinator = new RunCoordinator(
    basename(resolve(cfg.run.out_dir)),
    cfg,
    { scorer: new Scorer(backend), learner, pool, bus },
    { log, signal: opts.signal, onStep: opts.onStep, bars: true },
  );
  try {
    return { ...(await coordinator.run()), backend: backend.name };
  } finally {
    learner.release();
    await bus.close();
    await backend.dispose();
  }
}
