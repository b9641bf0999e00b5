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
  acquire(runId: string, minVersion: number, signal?: AbortSignal): Promise<Policy>;
}
