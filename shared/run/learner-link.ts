import type { LearnerApi } from './interfaces.js';
import type { LearnerStart } from './learner.js';
import type { RunRef } from './run-context.js';

/**
 * How the coordinator reads a failed learner call: `away` (unreachable, or held by another
 * coordinator until its lease runs out: wait, reconnect, go on),
 * `refused` (a precondition: the learner may have restarted without the run; reconnect once to see
 * where it stands), `other` (the run fails).
 */
export type LearnerFault = 'away' | 'refused' | 'other';

export interface LearnerLinkOptions {
  classify: (err: unknown) => LearnerFault;
  /** Longest pause between two attempts to reach the learner (the pause doubles from 500 ms). */
  retryMaxMs: number;
  signal?: AbortSignal;
  /** The run is held up (a reason) or goes on (null). */
  onWait: (reason: string | null) => void;
  log: (line: string) => void;
}

/** The learner came back somewhere else than the run was (restarted from a checkpoint): continue from `start`. */
export class LearnerReloaded extends Error {
  constructor(readonly start: LearnerStart) {
    super(`the learner came back at step ${start.step}`);
    this.name = 'LearnerReloaded';
  }
}

const message = (e: unknown) => String((e as { details?: string }).details || (e as Error).message || e);

/** Never classifies anything as recoverable: a learner in the same process does not go away. */
export const sameProcessLearner = (): LearnerFault => 'other';

/**
 * The coordinator's hold on its learner: InitRun retried with backoff while the learner is away or
 * held by someone else (the run waits, with the reason), the learner's lease kept while the run
 * goes, and calls that reconnect after a fault and either go on (the learner is where the run is)
 * or tell the run to continue from where the learner came back (`LearnerReloaded`).
 */
export class LearnerLink {
  private timer: NodeJS.Timeout | null = null;
  private waiting: string | null = null;

  constructor(
    private readonly api: LearnerApi,
    private readonly ref: RunRef,
    private readonly o: LearnerLinkOptions,
  ) {}

  /** Loads the run on the learner, waiting for as long as the learner is away or not free. */
  async connect(): Promise<LearnerStart> {
    let delay = 500;
    for (;;) {
      this.o.signal?.throwIfAborted();
      try {
        const start = await this.api.init(this.ref);
        this.wait(null);
        this.keepLease(start.leaseS ?? 0);
        return start;
      } catch (e) {
        const kind = this.o.classify(e);
        // Refused where it stands (a checkpoint it cannot read, a config it does not take): the
        // run's end. Away or busy with another coordinator's lease: wait for it.
        if (kind !== 'away' || this.o.signal?.aborted) throw e;
        this.wait(`learner unavailable (${message(e)})`);
        await sleep(delay, this.o.signal);
        delay = Math.min(delay * 2, this.o.retryMaxMs);
      }
    }
  }

  /**
   * Runs a learner call made with the learner at one of the steps `at`. When it fails because the
   * learner is away or refuses it, reconnects: with the learner still at one of `at` the call is
   * made again (a step it took already returns the same answer), otherwise LearnerReloaded.
   */
  async call<T>(what: string, at: readonly number[], fn: () => Promise<T>): Promise<T> {
    let refused = false;
    for (;;) {
      try {
        return await fn();
      } catch (e) {
        const kind = this.o.classify(e);
        // A refusal the learner repeats where it stands is the answer, not a fault.
        if (kind === 'other' || (kind === 'refused' && refused) || this.o.signal?.aborted) throw e;
        refused ||= kind === 'refused';
        this.o.log(`${what}: ${message(e)}; reconnecting to the learner`);
        await this.back(at);
      }
    }
  }

  /**
   * After another service failed (a rollout job): whether the learner being away explains it. Waits
   * for the learner when it is away; throws LearnerReloaded when it came back elsewhere.
   */
  async excuse(at: readonly number[]): Promise<boolean> {
    if (!this.api.renew) return false;
    try {
      const r = await this.api.renew(this.ref);
      if (at.includes(r.step)) return false;
    } catch (e) {
      if (this.o.classify(e) === 'other') return false;
    }
    await this.back(at);
    return true;
  }

  private async back(at: readonly number[]): Promise<void> {
    const start = await this.connect();
    if (!at.includes(start.step)) throw new LearnerReloaded(start);
  }

  private wait(reason: string | null): void {
    if (reason === this.waiting) return;
    if (reason) this.o.log(`waiting: ${reason}; retrying`);
    else if (this.waiting) this.o.log('the learner is back');
    this.waiting = reason;
    this.o.onWait(reason);
  }

  /** Renews the lease three times per lease period; a failure shows in the next call. */
  private keepLease(leaseS: number): void {
    if (this.timer || leaseS <= 0 || !this.api.renew) return;
    const renew = this.api.renew.bind(this.api);
    this.timer = setInterval(() => void renew(this.ref).catch(() => {}), (leaseS * 1000) / 3);
    this.timer.unref();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
