import { type StepTotals, stepTotals } from '../rl/dual-loss.js';
import type { KeyPosition } from '../rl/key-positions.js';
import type { Rollout } from '../rl/rollouts.js';

/** One learner's part of a step split over data-parallel learners. */
export interface StepShard {
  /** 0 is the leader, which adds the shards' gradients up and takes the optimizer step. */
  rank: number;
  groups: Rollout[][];
  /** The weight version each of `groups` was sampled at. */
  versions: number[];
  positions: KeyPosition[];
}

/** What every shard of a step is told besides its own part: the step's normalisers. */
export interface DataParallelStep {
  rank: number;
  /** Every learner's address, by rank. */
  peers: readonly string[];
  totals: StepTotals;
}

/** [start, end) of part `i` of `n` contiguous, near-equal parts of `length` items. */
export function shardRange(length: number, i: number, n: number): [number, number] {
  return [Math.floor((i * length) / n), Math.floor(((i + 1) * length) / n)];
}

/**
 * A step split into `n` contiguous shards in the step's own order: rank i takes the i-th run of
 * whole rollout groups (a group's advantages are normalised within it, so it never straddles two
 * learners) and the i-th run of NTP windows. The split depends on the counts only, never on timing
 * or on which learner answers first; a shard may be empty when a step has fewer groups or windows
 * than learners (its gradient is then zero).
 */
export function shardStep(
  groups: readonly Rollout[][],
  versions: readonly number[],
  positions: readonly KeyPosition[],
  n: number,
): { shards: StepShard[]; totals: StepTotals } {
  if (!Number.isInteger(n) || n < 1) throw new Error(`shardStep: ${n} learners`);
  if (versions.length !== groups.length)
    throw new Error(`shardStep: ${versions.length} versions for ${groups.length} groups`);
  const shards = Array.from({ length: n }, (_, rank): StepShard => {
    const [g0, g1] = shardRange(groups.length, rank, n);
    const [p0, p1] = shardRange(positions.length, rank, n);
    return {
      rank,
      groups: groups.slice(g0, g1),
      versions: versions.slice(g0, g1),
      positions: positions.slice(p0, p1),
    };
  });
  return { shards, totals: stepTotals(groups, positions) };
}
