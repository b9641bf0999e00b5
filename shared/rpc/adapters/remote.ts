import type { KeyPosition } from '../../rl/key-positions.js';
import type { RolloutJob } from '../../rl/rollout-job.js';
import type { Rollout } from '../../rl/rollouts.js';
import type { EvalMode, EvalResult } from '../../run/evaluate.js';
import type { DataParallelStep } from '../../run/gradient-shards.js';
import type { LearnerApi, RolloutEndpoint, ScorerApi } from '../../run/interfaces.js';
import type { CoordinatorState, LearnerStart } from '../../run/learner.js';
import type { JobResult } from '../../run/rollout-worker.js';
import type { RunRef } from '../../run/run-context.js';
import type { ScoreOptions, Split } from '../../run/scorer.js';
import type { LearnerClient, RolloutClient, ScorerClient } from '../client.js';
import { Split as PbSplit } from '../gen/rmt/v1/scorer.js';
import {
  dataParallelToPb,
  evalFromPb,
  groupFromPb,
  groupToPb,
  keyPositionFromPb,
  keyPositionToPb,
  runRefToPb,
  settingsToPb,
} from './convert.js';

/**
 * The coordinator's view of services in other processes: the same interfaces as the in-process
 * ones (shared/run/interfaces.ts), spoken over gRPC.
 */
export class RemoteScorer implements ScorerApi {
  constructor(private readonly client: ScorerClient) {}

  async keyPositions(run: RunRef, split: Split, o: ScoreOptions = {}): Promise<KeyPosition[]> {
    const out: KeyPosition[] = [];
    const stream = this.client.scoreDocuments(
      { run: runRefToPb(run), split: split === 'train' ? PbSplit.SPLIT_TRAIN : PbSplit.SPLIT_HELD_OUT },
      { signal: o.signal },
    );
    for await (const m of stream) {
      if (m.event?.$case === 'progress') o.progress?.(m.event.value.done, m.event.value.total);
      else if (m.event?.$case === 'positions')
        out.push(...m.event.value.positions.map((p) => keyPositionFromPb(p)));
    }
    return out;
  }
}

export class RemoteLearner implements LearnerApi {
  constructor(
    private readonly client: LearnerClient,
    private readonly stepDeadlineMs = 30 * 60_000,
  ) {}

  async init(run: RunRef): Promise<LearnerStart> {
    const r = await this.client.initRun(
      { run: runRefToPb(run), coordinatorId: run.holder ?? '' },
      { deadlineMs: 10 * 60_000 },
    );
    return {
      step: r.step,
      extra: r.extraJson ? (JSON.parse(r.extraJson) as Record<string, unknown>) : null,
      resumedFrom: r.resumedFrom || null,
      leaseS: r.leaseS,
    };
  }

  async trainStep(
    run: RunRef,
    step: number,
    groups: Rollout[][],
    positions: KeyPosition[],
    versions: readonly number[],
    dp?: DataParallelStep,
    /** Cancels the call (another learner of the same step failed). */
    signal?: AbortSignal,
  ): Promise<Record<string, number>> {
    const r = await this.client.trainStep(
      {
        runId: run.runId,
        step,
        groups: groups.map((g, i) => groupToPb(g, versions[i], '')),
        positions: positions.map(keyPositionToPb),
        coordinatorId: run.holder ?? '',
        dataParallel: dp ? dataParallelToPb(dp) : undefined,
      },
      { deadlineMs: this.stepDeadlineMs, signal },
    );
    return r.metrics;
  }

  async checkpoint(run: RunRef, state: CoordinatorState): Promise<string> {
    const r = await this.client.checkpoint(
      { runId: run.runId, extraJson: JSON.stringify(state), coordinatorId: run.holder ?? '' },
      { deadlineMs: 10 * 60_000 },
    );
    return r.path;
  }

  async saveFinal(run: RunRef): Promise<string> {
    const r = await this.client.checkpoint(
      { runId: run.runId, final: true, coordinatorId: run.holder ?? '' },
      { deadlineMs: 10 * 60_000 },
    );
    return r.path;
  }

  async renew(run: RunRef): Promise<{ step: number; leaseS: number }> {
    const r = await this.client.renewLease(
      { runId: run.runId, coordinatorId: run.holder ?? '' },
      { deadlineMs: 10_000 },
    );
    return { step: r.step, leaseS: r.leaseS };
  }
}

/** A rollout worker in another process, reached at the address it announced in its heartbeats. */
export class RemoteEndpoint implements RolloutEndpoint {
  constructor(
    readonly id: string,
    readonly client: RolloutClient,
  ) {}

  async generate(run: RunRef, job: RolloutJob, signal?: AbortSignal): Promise<JobResult> {
    const groups: Rollout[][] = [];
    let version = -1;
    const stream = this.client.generateRollouts(
      {
        run: runRefToPb(run),
        step: job.step,
        positions: job.positions.map(keyPositionToPb),
        settings: settingsToPb(job.settings),
        seed: job.seed,
        minWeightVersion: job.minVersion,
      },
      { signal },
    );
    for await (const g of stream) {
      groups.push(groupFromPb(g));
      version = g.weightVersion;
    }
    if (groups.length !== job.positions.length) {
      throw new Error(
        `worker ${this.id} returned ${groups.length} groups for ${job.positions.length} positions`,
      );
    }
    return { groups, version, workerId: this.id };
  }

  async evaluate(
    run: RunRef,
    positions: readonly KeyPosition[],
    mode: EvalMode,
    budget: number | null,
    minVersion: number,
    signal?: AbortSignal,
  ): Promise<EvalResult> {
    const r = await this.client.evaluate(
      {
        run: runRefToPb(run),
        positions: positions.map(keyPositionToPb),
        mode,
        budget: budget ?? 0,
        minWeightVersion: minVersion,
      },
      { signal },
    );
    return evalFromPb(r);
  }
}
