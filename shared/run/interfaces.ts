import type { KeyPosition } from '../rl/key-positions.js';
import type { RolloutJob } from '../rl/rollout-job.js';
import type { Rollout } from '../rl/rollouts.js';
import type { EvalMode, EvalResult } from './evaluate.js';
import type { DataParallelStep } from './gradient-shards.js';
import type { CoordinatorState, LearnerStart } from './learner.js';
import type { JobResult } from './rollout-worker.js';
import type { RunRef } from './run-context.js';
import type { ScoreOptions, Split } from './scorer.js';

/**
 * The three services the coordinator drives, as it sees them. The embedded run implements them
 * with the library objects in-process (shared/run/local.ts); the distributed run with gRPC clients
 * (shared/rpc/adapters/). The coordinator's loop is the same code in both.
 */
export interface ScorerApi {
  keyPositions(run: RunRef, split: Split, o?: ScoreOptions): Promise<KeyPosition[]>;
}

export interface LearnerApi {
  /** Loads the run (resuming from its newest checkpoint when there is one). */
  init(run: RunRef): Promise<LearnerStart>;
  trainStep(
    run: RunRef,
    step: number,
    groups: Rollout[][],
    positions: KeyPosition[],
    /** The weight version each group was sampled at (pi_old is the sampler's when older). */
    versions: readonly number[],
    /** The groups and positions are this learner's shard of a step split over several learners. */
    dp?: DataParallelStep,
    /** Cancels the call (another learner of the same step failed); a local learner may ignore it. */
    signal?: AbortSignal,
  ): Promise<Record<string, number>>;
  checkpoint(run: RunRef, state: CoordinatorState): Promise<string>;
  saveFinal(run: RunRef): Promise<string>;
  /**
   * Keeps the lease the learner holds the run under for `run.holder` (a learner in another
   * process); refused once the learner no longer holds the run for it.
   */
  renew?(run: RunRef): Promise<{ step: number; leaseS: number }>;
}

/** One rollout worker as the pool sees it. */
export interface RolloutEndpoint {
  readonly id: string;
  generate(run: RunRef, job: RolloutJob, signal?: AbortSignal): Promise<JobResult>;
  evaluate(
    run: RunRef,
    positions: readonly KeyPosition[],
    mode: EvalMode,
    budget: number | null,
    minVersion: number,
    signal?: AbortSignal,
  ): Promise<EvalResult>;
}
