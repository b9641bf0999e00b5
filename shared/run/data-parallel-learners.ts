import type { KeyPosition } from '../rl/key-positions.js';
import type { Rollout } from '../rl/rollouts.js';
import { shardStep } from './gradient-shards.js';
import type { LearnerApi } from './interfaces.js';
import type { CoordinatorState, LearnerStart } from './learner.js';
import type { RunRef } from './run-context.js';

/**
 * Several learners as the coordinator's one learner (docs/services.md, "Data-parallel learners"):
 * each step is split into contiguous shards (shared/run/gradient-shards.ts) sent to every learner at
 * once; rank 0, the leader, adds the followers' gradients in rank order, takes the one AdamW step,
 * answers with the whole step's metrics and writes the checkpoints. The run's step is the leader's.
 * One learner is called exactly as before (no data-parallel fields).
 *
 * A failing learner fails the step: the others' calls are cancelled (the leader then takes no
 * step) and the first failure is what the run sees, so a learner that is away makes the run wait
 * and reconnect (shared/run/learner-link.ts) whichever rank it is.
 */
export class DataParallelLearners implements LearnerApi {
  constructor(
    private readonly learners: readonly LearnerApi[],
    /** Every learner's address by rank, as the learners reach one another. */
    private readonly addresses: readonly string[],
  ) {
    if (learners.length === 0 || learners.length !== addresses.length)
      throw new Error(`${learners.length} learners for ${addresses.length} addresses`);
  }

  get size(): number {
    return this.learners.length;
  }

  async init(run: RunRef): Promise<LearnerStart> {
    const [leader] = await this.all((l) => l.init(run));
    return leader;
  }

  async trainStep(
    run: RunRef,
    step: number,
    groups: Rollout[][],
    positions: KeyPosition[],
    versions: readonly number[],
  ): Promise<Record<string, number>> {
    if (this.learners.length === 1) return this.learners[0].trainStep(run, step, groups, positions, versions);
    const { shards, totals } = shardStep(groups, versions, positions, this.learners.length);
    const [leader] = await this.all((l, rank, signal) => {
      const s = shards[rank];
      return l.trainStep(
        run,
        step,
        s.groups,
        s.positions,
        s.versions,
        { rank, peers: this.addresses, totals },
        signal,
      );
    });
    return leader;
  }

  async checkpoint(run: RunRef, state: CoordinatorState): Promise<string> {
    // Followers write nothing; the call ends their part of the step (another run may take them).
    const [leader] = await this.all((l) => l.checkpoint(run, state));
    return leader;
  }

  async saveFinal(run: RunRef): Promise<string> {
    const [leader] = await this.all((l) => l.saveFinal(run));
    return leader;
  }

  async renew(run: RunRef): Promise<{ step: number; leaseS: number }> {
    const [leader] = await this.all(async (l) => {
      if (!l.renew) throw new Error('a data-parallel learner without leases');
      return l.renew(run);
    });
    return leader;
  }

  /**
   * `call` on every learner at once, results by rank. The first failure cancels the other calls and
   * is the one thrown (not the cancellations it caused).
   */
  private async all<T>(call: (l: LearnerApi, rank: number, signal: AbortSignal) => Promise<T>): Promise<T[]> {
    const stop = new AbortController();
    let first: { error: unknown } | null = null;
    const settled = await Promise.allSettled(
      this.learners.map((l, rank) =>
        call(l, rank, stop.signal).catch((error: unknown) => {
          if (!first) {
            first = { error };
            stop.abort();
          }
          throw error;
        }),
      ),
    );
    if (first) throw (first as { error: unknown }).error;
    return settled.map((s) => (s as PromiseFulfilledResult<T>).value);
  }
}
