import type { Decoder } from '../model/decoder.js';

/** The policy a rollout worker samples from, at a weight version (the learner's step count). */
export interface Policy {
  model: Decoder;
  version: number;
}

/**
 * Where a rollout worker gets its policy. The embedded learner hands out its own model (no copy);
 * a remote worker pulls weights from the learner service when it holds an older version than a
 * job allows.
 */
export interface PolicySource {
  /**
   * The policy at a version in [minVersion, maxVersion]. A version above `maxVersion` (the step a
   * job samples for) can only be left from before the learner went back to an earlier checkpoint,
   * and is replaced by the learner's current weights.
   */
  acquire(runId: string, minVersion: number, signal?: AbortSignal, maxVersion?: number): Promise<Policy>;
}
