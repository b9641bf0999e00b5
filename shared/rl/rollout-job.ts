import type { RewardKind } from '../config/rmt-defaults.js';
import type { KeyPosition } from './key-positions.js';

/**
 * A unit of rollout work: the positions of one generation batch and the seed of its sampler.
 * Jobs are what the coordinator hands to rollout workers; because a job fixes its batch and its
 * seed, the same job gives the same rollouts on any worker at the same weight version, so a job
 * lost with a worker can be redone elsewhere and a distributed run matches the embedded one.
 */
export interface RolloutSettings {
  /** Rollouts per key position (grpo.G). */
  G: number;
  temperature: number;
  /** B_t: stated in the prompt when `stateBudget`, and the length reward's budget. */
  budget: number;
  stateBudget: boolean;
  /** Most response tokens; a response cut here is `finish_reason = length`. */
  hardCap: number;
  rewardKind: RewardKind;
  /** Sequences generated together; a job never holds more than floor(maxBatch / G) positions. */
  maxBatch: number;
}

export interface RolloutJob {
  runId: string;
  step: number;
  /** Index of the job within its step (0, 1, ...); replacement draws continue the count. */
  index: number;
  positions: KeyPosition[];
  settings: RolloutSettings;
  seed: number;
  /** The oldest weight version the job may be generated with (the staleness bound). */
  minVersion: number;
}

/** A 32-bit seed for job `index` of `step` of a run seeded `runSeed` (splitmix-style mixing). */
export function jobSeed(runSeed: number, step: number, index: number): number {
  let z = (runSeed ^ Math.imul(step + 1, 0x9e3779b9) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x7feb352d) >>> 0;
  z = Math.imul(z ^ (z >>> 15), 0x846ca68b) >>> 0;
  return (z ^ (z >>> 16)) >>> 0;
}

/** Positions per job: as many whole groups as fit one generation batch. */
export function positionsPerJob(settings: RolloutSettings): number {
  return Math.max(1, Math.floor(settings.maxBatch / settings.G));
}

/** Splits a step's positions into jobs, numbered from `firstIndex`. */
export function planJobs(
  run: { runId: string; seed: number },
  step: number,
  positions: readonly KeyPosition[],
  settings: RolloutSettings,
  minVersion: number,
  firstIndex = 0,
): RolloutJob[] {
  const per = positionsPerJob(settings);
  const jobs: RolloutJob[] = [];
  for (let i = 0; i < positions.length; i += per) {
    const index = firstIndex + jobs.length;
    jobs.push({
      runId: run.runId,
      step,
      index,
      positions: positions.slice(i, i + per),
      settings,
      seed: jobSeed(run.seed, step, index),
      minVersion,
    });
  }
  return jobs;
}
