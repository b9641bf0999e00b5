import type { EventBus } from '../bus/bus.js';
import type { KeyPosition } from '../rl/key-positions.js';
import type { RolloutJob } from '../rl/rollout-job.js';
import { generateRollouts, type Rollout } from '../rl/rollouts.js';
import { Rng } from '../util/rng.js';
import { stopOnAbort } from './abortable-model.js';
import { type EvalMode, type EvalResult, evaluatePositions, ntpExcluded } from './evaluate.js';
import type { PolicySource } from './policy.js';
import type { RunContext } from './run-context.js';

export interface JobResult {
  groups: Rollout[][];
  /** The weight version the rollouts were sampled at. */
  version: number;
  workerId: string;
}

export interface WorkerStats {
  workerId: string;
  runId: string;
  version: number;
  busy: boolean;
  tokensGenerated: number;
  tokensPerSecond: number;
}

/**
 * The rollout generator (docs/method.md sections 1, 2, 6): G rollouts per key position of a job with the
 * KV-cache sampler under the job's budget (the hard cap truncates and is reported as
 * `finish_reason = length`), parsed and rewarded, at a weight version no older than the job
 * allows. Each group's accuracy is published as a difficulty observation, which is how the
 * coordinator's adaptive difficulty table learns (it never reads rollouts for that).
 *
 * One job runs at a time: the policy's buffers belong to the job in flight, and a newer version is
 * only swapped in between jobs.
 */
export class RolloutWorker {
  private queue: Promise<unknown> = Promise.resolve();
  private stats: WorkerStats;

  constructor(
    readonly id: string,
    private readonly policy: PolicySource,
    private readonly bus?: EventBus,
    private readonly log?: (line: string) => void,
  ) {
    this.stats = { workerId: id, runId: '', version: 0, busy: false, tokensGenerated: 0, tokensPerSecond: 0 };
  }

  status(): WorkerStats {
    return { ...this.stats };
  }

  generate(ctx: RunContext, job: RolloutJob, signal?: AbortSignal): Promise<JobResult> {
    return this.exclusive(async () => {
      signal?.throwIfAborted();
      const t0 = performance.now();
      const policy = await this.policy.acquire(ctx.runId, job.minVersion, signal, job.step);
      this.stats.runId = ctx.runId;
      this.stats.version = policy.version;
      const groups = await generateRollouts(
        stopOnAbort(policy.model, signal),
        ctx.tokenizer,
        ctx.format,
        job.positions,
        { ...job.settings, reward: ctx.cfg.reward },
        new Rng(job.seed),
      );
      const tokens = groups.flat().reduce((n, r) => n + r.responseIds.length, 0);
      this.stats.tokensGenerated += tokens;
      this.stats.tokensPerSecond = tokens / ((performance.now() - t0) / 1000);
      // The observations are notifications: the coordinator applies the ones the bus does not bring
      // from the groups it receives (the same numbers), so a bus that is away costs no job.
      const bus = this.bus;
      if (bus && bus.health?.().connected !== false) {
        await Promise.all(
          groups.map((g) =>
            bus.publish('rmt.difficulty.observed', {
              run_id: ctx.runId,
              step: job.step,
              position_id: g[0].positionId,
              accuracy: groupAccuracy(g),
              group_size: g.length,
              weight_version: policy.version,
              worker_id: this.id,
            }),
          ),
        ).catch((e: Error) =>
          this.log?.(`step ${job.step}: publishing difficulty observations failed: ${e.message}`),
        );
      }
      return { groups, version: policy.version, workerId: this.id };
    });
  }

  evaluate(
    ctx: RunContext,
    positions: readonly KeyPosition[],
    mode: EvalMode,
    budget: number | null,
    minVersion: number,
    signal?: AbortSignal,
  ): Promise<EvalResult> {
    return this.exclusive(async () => {
      const policy = await this.policy.acquire(ctx.runId, minVersion, signal);
      signal?.throwIfAborted();
      return evaluatePositions(stopOnAbort(policy.model, signal), ctx.tokenizer, ctx.format, positions, {
        mode,
        eval_splits: ctx.cfg.curriculum.eval_splits,
        budget,
        hardCap: ctx.cfg.budget.hard_cap,
        batch: ctx.cfg.train.generation_batch,
        ntpExclude: ntpExcluded(ctx.cfg.eval.ntp_over, ctx.tokenizer),
        match: ctx.cfg.eval.match,
      });
    });
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(async () => {
      this.stats.busy = true;
      try {
        return await work();
      } finally {
        this.stats.busy = false;
      }
    });
    this.queue = run.catch(() => {});
    return run;
  }
}

/** The share of a group's rollouts that predicted the next token correctly. */
export function groupAccuracy(group: readonly Rollout[]): number {
  return group.filter((r) => r.reward.rMatch > 0).length / group.length;
}
