import { SERVICE_LIMITS } from '../config/service-limits.js';
import type { KeyPosition } from '../rl/key-positions.js';
import type { Rollout } from '../rl/rollouts.js';
import type { GradientPiece } from './gradient-reduce.js';
import type { DataParallelStep } from './gradient-shards.js';
import { RequestError } from './request-error.js';

/**
 * How one data-parallel learner reaches another (gRPC in the learner service,
 * shared/rpc/adapters/learner-peers.ts): the leader pulls each follower's shard gradient, a
 * follower pulls the leader's weights.
 */
export interface LearnerPeers {
  gradient(
    address: string,
    runId: string,
    step: number,
    rank: number,
    signal?: AbortSignal,
  ): AsyncIterable<GradientPiece>;
  weights(
    address: string,
    runId: string,
    version: number,
    signal?: AbortSignal,
  ): Promise<{ version: number; weights: Map<string, Float32Array> }>;
}

/** LearnerPeers for one run (the run id bound). */
export interface RunPeers {
  gradient(address: string, step: number, rank: number, signal?: AbortSignal): AsyncIterable<GradientPiece>;
  weights(
    address: string,
    version: number,
    signal?: AbortSignal,
  ): Promise<{ version: number; weights: Map<string, Float32Array> }>;
}

/** `peers` with `runId` bound. */
export function runPeers(peers: LearnerPeers, runId: string): RunPeers {
  return {
    gradient: (address, step, rank, signal) => peers.gradient(address, runId, step, rank, signal),
    weights: (address, version, signal) => peers.weights(address, runId, version, signal),
  };
}

const bad = (field: string, why: string) =>
  new RequestError(`data_parallel.${field}: ${why}`, 'argument', `data_parallel.${field}`);

/**
 * A shard's data-parallel fields against what it holds: a rank among the peers, addresses that are
 * host:port, and step totals no smaller than the shard's own share (the whole step contains it).
 */
export function checkDataParallel(
  dp: DataParallelStep,
  groups: readonly Rollout[][],
  positions: readonly KeyPosition[],
  /** What a whole step of the run's config can hold at most. */
  max: { rlTokens: number; ntpTokens: number; keyIds: number },
): void {
  const n = dp.peers.length;
  if (n < 1 || n > SERVICE_LIMITS.max_learners)
    throw bad('peers', `${n} learners, 1 to ${SERVICE_LIMITS.max_learners}`);
  if (!(Number.isInteger(dp.rank) && dp.rank >= 0 && dp.rank < n))
    throw bad('rank', `${dp.rank}, not in [0, ${n})`);
  for (const [i, a] of dp.peers.entries()) {
    if (!/^[A-Za-z0-9.:[\]_-]{1,253}:[0-9]{1,5}$/.test(a))
      throw bad(`peers[${i}]`, 'not a host:port address');
  }
  const rl = groups.reduce((s, g) => s + g.reduce((m, r) => m + r.responseIds.length, 0), 0);
  const { rlTokens, ntpTokens, keyIds } = dp.totals;
  if (!(Number.isSafeInteger(rlTokens) && rlTokens >= rl && rlTokens <= max.rlTokens))
    throw bad(
      'rl_tokens',
      `${rlTokens}, not in [${rl} (this shard's), ${max.rlTokens} (a whole step's at most)]`,
    );
  if (!(Number.isSafeInteger(ntpTokens) && ntpTokens >= 0 && ntpTokens <= max.ntpTokens))
    throw bad('ntp_tokens', `${ntpTokens}, not in [0, ${max.ntpTokens}]`);
  if (keyIds.size > max.keyIds) throw bad('key_ids', `${keyIds.size} ids, a step has at most ${max.keyIds}`);
  for (const [i, p] of positions.entries()) {
    if (!keyIds.has(p.id)) throw bad('key_ids', `leaves out positions[${i}].id ${p.id}`);
  }
}

/**
 * A follower's gradient of the step it last computed, held until the leader pulls it. The leader may
 * ask before the follower's own TrainStep of that step arrived (both are sent at once): it waits.
 */
export class ShardGradientSlot {
  private held: { step: number; grads: Map<string, Float32Array>; metrics: Record<string, number> } | null =
    null;
  private readonly waiters = new Set<() => void>();

  put(step: number, grads: Map<string, Float32Array>, metrics: Record<string, number>): void {
    this.held = { step, grads, metrics };
    for (const w of this.waiters) w();
  }

  /** Forgets what is held (the run was let go, or the weights went back to a checkpoint). */
  clear(): void {
    this.held = null;
  }

  /** The gradient of `step`, once computed; refused when this learner computed a later step. */
  async take(
    step: number,
    signal?: AbortSignal,
  ): Promise<{ grads: Map<string, Float32Array>; metrics: Record<string, number> }> {
    for (;;) {
      signal?.throwIfAborted();
      const h = this.held;
      if (h && h.step === step) return h;
      if (h && h.step > step)
        throw new RequestError(
          `the gradient of step ${step} asked for, this learner computed step ${h.step}`,
          'precondition',
        );
      await new Promise<void>((resolve) => {
        const done = () => {
          this.waiters.delete(done);
          signal?.removeEventListener('abort', done);
          resolve();
        };
        this.waiters.add(done);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
  }
}
