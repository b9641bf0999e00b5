import type { RewardKind } from '../../config/rmt-defaults.js';
import type { KeyPosition } from '../../rl/key-positions.js';
import type { FinishReason } from '../../rl/prompt-format.js';
import type { RolloutSettings } from '../../rl/rollout-job.js';
import type { Rollout } from '../../rl/rollouts.js';
import type { EvalMode, EvalResult, SplitAccuracy } from '../../run/evaluate.js';
import type { DataParallelStep } from '../../run/gradient-shards.js';
import type { RunRef } from '../../run/run-context.js';
import { invalidArgument } from '../errors.js';
import * as pb from '../gen/rmt/v1/common.js';
import type { DataParallel as PbDataParallel } from '../gen/rmt/v1/learner.js';
import type { RolloutSettings as PbSettings } from '../gen/rmt/v1/rollout.js';

/**
 * Library types <-> protobuf messages. Every number that decides a result (log-probabilities,
 * rewards, entropies) travels as a double, so a distributed run sees exactly what an embedded one
 * would.
 */
export const runRefToPb = (r: RunRef): pb.RunRef => ({ runId: r.runId, configJson: JSON.stringify(r.cfg) });

export const keyPositionToPb = (p: KeyPosition): pb.KeyPosition => ({ ...p });

export function keyPositionFromPb(p: pb.KeyPosition, field = 'positions'): KeyPosition {
  if (p.context.length === 0)
    throw invalidArgument(`${field}.context`, `position ${p.id} has an empty context`);
  return { id: p.id, context: p.context, target: p.target, continuation: p.continuation, entropy: p.entropy };
}

const FINISH_TO_PB: Record<FinishReason, pb.FinishReason> = {
  stop: pb.FinishReason.FINISH_REASON_STOP,
  length: pb.FinishReason.FINISH_REASON_LENGTH,
  no_answer: pb.FinishReason.FINISH_REASON_NO_ANSWER,
};

function finishFromPb(f: pb.FinishReason): FinishReason {
  switch (f) {
    case pb.FinishReason.FINISH_REASON_STOP:
      return 'stop';
    case pb.FinishReason.FINISH_REASON_LENGTH:
      return 'length';
    case pb.FinishReason.FINISH_REASON_NO_ANSWER:
      return 'no_answer';
    default:
      throw invalidArgument('rollouts.finish_reason', `unknown finish reason ${f}`);
  }
}

export function rolloutToPb(r: Rollout): pb.Rollout {
  return {
    positionId: r.positionId,
    promptIds: r.promptIds,
    responseIds: r.responseIds,
    logprobs: r.logprobs,
    reasoningIds: r.parsed.reasoningIds,
    predictionIds: r.parsed.predictionIds,
    predictionBytes: r.parsed.predictionBytes,
    finishReason: FINISH_TO_PB[r.parsed.finishReason],
    reward: { reward: r.reward.reward, rMatch: r.reward.rMatch, rLen: r.reward.rLen },
    budget: r.budget,
  };
}

export function rolloutFromPb(r: pb.Rollout): Rollout {
  return {
    positionId: r.positionId,
    promptIds: r.promptIds,
    responseIds: r.responseIds,
    logprobs: r.logprobs,
    parsed: {
      reasoningIds: r.reasoningIds,
      predictionIds: r.predictionIds,
      predictionBytes: new Uint8Array(r.predictionBytes),
      finishReason: finishFromPb(r.finishReason),
    },
    reward: { reward: r.reward?.reward ?? 0, rMatch: r.reward?.rMatch ?? 0, rLen: r.reward?.rLen ?? 0 },
    budget: r.budget,
  };
}

export function groupToPb(g: readonly Rollout[], version: number, workerId: string): pb.RolloutGroup {
  return {
    positionId: g[0]?.positionId ?? 0,
    rollouts: g.map(rolloutToPb),
    weightVersion: version,
    workerId,
  };
}

export function groupFromPb(g: pb.RolloutGroup): Rollout[] {
  return g.rollouts.map(rolloutFromPb);
}

export function settingsToPb(s: RolloutSettings): PbSettings {
  return {
    groupSize: s.G,
    temperature: s.temperature,
    budget: s.budget,
    stateBudget: s.stateBudget,
    hardCap: s.hardCap,
    rewardKind: s.rewardKind,
    maxBatch: s.maxBatch,
  };
}

const REWARD_KINDS: readonly RewardKind[] = ['match', 'match+length', 'byte-prefix'];

export function settingsFromPb(s: PbSettings | undefined): RolloutSettings {
  if (!s) throw invalidArgument('settings', 'required');
  if (!(s.groupSize >= 1)) throw invalidArgument('settings.group_size', `must be >= 1, got ${s.groupSize}`);
  if (!(s.budget >= 1)) throw invalidArgument('settings.budget', `must be >= 1, got ${s.budget}`);
  if (!(s.hardCap >= 1)) throw invalidArgument('settings.hard_cap', `must be >= 1, got ${s.hardCap}`);
  if (!(s.maxBatch >= s.groupSize)) {
    throw invalidArgument('settings.max_batch', `must hold one group (>= ${s.groupSize}), got ${s.maxBatch}`);
  }
  if (!(Number.isFinite(s.temperature) && s.temperature >= 0))
    throw invalidArgument('settings.temperature', `must be finite and >= 0, got ${s.temperature}`);
  if (!REWARD_KINDS.includes(s.rewardKind as RewardKind)) {
    throw invalidArgument('settings.reward_kind', `one of ${REWARD_KINDS.join(', ')}, got "${s.rewardKind}"`);
  }
  return {
    G: s.groupSize,
    temperature: s.temperature,
    budget: s.budget,
    stateBudget: s.stateBudget,
    hardCap: s.hardCap,
    rewardKind: s.rewardKind as RewardKind,
    maxBatch: s.maxBatch,
  };
}

export function evalToPb(e: EvalResult): pb.EvalResult {
  return {
    mode: e.mode,
    easy: e.easy,
    medium: e.medium,
    hard: e.hard,
    avg: e.avg,
    reasoningLength: e.reasoning_length,
    noAnswerRate: e.no_answer_rate,
    positions: e.positions,
  };
}

const noSplit: SplitAccuracy = { mean: Number.NaN, ci95: Number.NaN, n: 0 };

export function evalFromPb(e: pb.EvalResult): EvalResult {
  return {
    mode: e.mode as EvalMode,
    easy: e.easy ?? noSplit,
    medium: e.medium ?? noSplit,
    hard: e.hard ?? noSplit,
    avg: e.avg,
    reasoning_length: e.reasoningLength,
    no_answer_rate: e.noAnswerRate,
    positions: e.positions,
  };
}

export function dataParallelToPb(dp: DataParallelStep): PbDataParallel {
  return {
    rank: dp.rank,
    peers: [...dp.peers],
    rlTokens: dp.totals.rlTokens,
    ntpTokens: dp.totals.ntpTokens,
    keyIds: [...dp.totals.keyIds],
  };
}

/** TrainStepRequest.data_parallel (undefined when unset); its numbers are checked by the learner. */
export function dataParallelFromPb(dp: PbDataParallel | undefined): DataParallelStep | undefined {
  if (!dp) return undefined;
  if (dp.keyIds.length > 1 << 20) throw invalidArgument('data_parallel.key_ids', `${dp.keyIds.length} ids`);
  return {
    rank: dp.rank,
    peers: dp.peers,
    totals: { rlTokens: dp.rlTokens, ntpTokens: dp.ntpTokens, keyIds: new Set(dp.keyIds) },
  };
}
