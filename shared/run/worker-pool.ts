import type { KeyPosition } from '../rl/key-positions.js';
import type { RolloutJob } from '../rl/rollout-job.js';
import type { EvalMode, EvalResult } from './evaluate.js';
import type { RolloutEndpoint } from './interfaces.js';
import type { JobResult } from './rollout-worker.js';
import type { RunRef } from './run-context.js';

export interface WorkerPoolOptions {
  /** A job running longer than this is abandoned and handed to another worker. */
  jobTimeoutMs: number;
  /** How long to wait for a first worker when none is alive. */
  workerWaitMs: number;
  /** How often a job may fail (on any workers) before the step fails. */
  maxAttempts: number;
  log?: (line: string) => void;
}

export class NoWorkersError extends Error {}

/**
 * Dispatch of a step's rollout jobs across however many workers are alive now. Each idle worker
 * takes the next job; a job whose worker fails or times out goes back to the queue and is redone
 * elsewhere (jobs are deterministic, so nothing about the step changes); a worker that failed sits
 * out for a while; workers that appear mid-step start taking jobs at once. Results come back in
 * job order whatever the interleaving.
 */
export class WorkerPool {
  private readonly benched = new Map<string, number>();
  private queued = 0;
  private running = 0;

  constructor(
    private readonly endpoints: () => RolloutEndpoint[],
    private readonly o: WorkerPoolOptions,
  ) {}

  /** Jobs waiting for a worker and jobs being generated now (what an autoscaler watches). */
  load(): { queued: number; running: number } {
    return { queued: this.queued, running: this.running };
  }

  alive(): RolloutEndpoint[] {
    const now = Date.now();
    return this.endpoints().filter((e) => (this.benched.get(e.id) ?? 0) <= now);
  }

  /**
   * Runs the jobs and returns their results in job order. `excuse` is asked about a failed job
   * before it counts against `maxAttempts`: true when the failure has a cause outside the worker
   * (the learner away, now back), a rejection fails the run of jobs with its error.
   */
  async run(
    run: RunRef,
    jobs: readonly RolloutJob[],
    signal?: AbortSignal,
    excuse?: (err: Error) => Promise<boolean>,
  ): Promise<JobResult[]> {
    const results: (JobResult | undefined)[] = new Array(jobs.length);
    const attempts = new Array<number>(jobs.length).fill(0);
    const queue = jobs.map((_, i) => i);
    const busy = new Map<string, Promise<void>>();
    let failure: Error | undefined;
    // Since when no worker has been available (reset whenever one is).
    let waitStart = Date.now();
    while ((queue.length > 0 || busy.size > 0) && !failure) {
      signal?.throwIfAborted();
      this.queued = queue.length;
      this.running = busy.size;
      const idle = this.alive().filter((e) => !busy.has(e.id));
      if (busy.size > 0 || idle.length > 0) waitStart = Date.now();
      if (busy.size === 0 && idle.length === 0) {
        if (Date.now() - waitStart > this.o.workerWaitMs) {
          throw new NoWorkersError(`no rollout worker alive after ${this.o.workerWaitMs / 1000} s`);
        }
        await sleep(100);
        continue;
      }
      for (const e of idle) {
        const i = queue.shift();
        if (i === undefined) break;
        attempts[i]++;
        busy.set(
          e.id,
          this.attempt(run, e, jobs[i], signal).then(
            (r) => {
              results[i] = r;
              busy.delete(e.id);
            },
            async (err: Error) => {
              if (signal?.aborted) {
                busy.delete(e.id);
                return;
              }
              this.o.log?.(
                `rollout job ${jobs[i].step}/${jobs[i].index} failed on ${e.id}: ${err.message}; redoing it`,
              );
              // The worker stays busy (takes no job) until the excuse is settled.
              let excused = false;
              try {
                excused = excuse ? await excuse(err) : false;
              } catch (cause) {
                failure ??= cause as Error;
              }
              busy.delete(e.id);
              if (failure) return;
              if (excused) {
                queue.unshift(i);
                attempts[i]--;
                return;
              }
              this.benched.set(e.id, Date.now() + 2000);
              if (attempts[i] >= this.o.maxAttempts) {
                failure = new Error(
                  `rollout job ${jobs[i].index} of step ${jobs[i].step} failed ${attempts[i]} times: ${err.message}`,
                );
              } else {
                queue.unshift(i);
              }
            },
          ),
        );
      }
      // Wake on the first job to finish, or soon, to pick up workers that joined meanwhile.
      await Promise.race([...busy.values(), sleep(queue.length > 0 ? 100 : 1000)]);
    }
    // Jobs still out finish before the failure is told: none of them publishes after the caller
    // has moved on (a run that starts a step again must not hear the abandoned one's observations).
    if (failure) await Promise.allSettled(busy.values());
    this.queued = 0;
    this.running = 0;
    if (failure) throw failure;
    return results as JobResult[];
  }

  async evaluate(
    run: RunRef,
    positions: readonly KeyPosition[],
    mode: EvalMode,
    budget: number | null,
    minVersion: number,
  ): Promise<EvalResult> {
    let last: Error | undefined;
    const deadline = Date.now() + this.o.workerWaitMs;
    for (let a = 0; a < this.o.maxAttempts; ) {
      const [e] = this.alive();
      if (!e) {
        if (Date.now() > deadline) break;
        await sleep(200);
        continue;
      }
      a++;
      try {
        return await e.evaluate(run, positions, mode, budget, minVersion);
      } catch (err) {
        last = err as Error;
        this.benched.set(e.id, Date.now() + 2000);
      }
    }
    throw last ?? new NoWorkersError('no rollout worker alive to evaluate');
  }

  private async attempt(
    run: RunRef,
    e: RolloutEndpoint,
    job: RolloutJob,
    outer?: AbortSignal,
  ): Promise<JobResult> {
    const ctl = new AbortController();
    const stop = () => ctl.abort();
    outer?.addEventListener('abort', stop, { once: true });
    const timer = setTimeout(
      () => ctl.abort(new Error(`timed out after ${this.o.jobTimeoutMs / 1000} s`)),
      this.o.jobTimeoutMs,
    );
    try {
      return await Promise.race([
        e.generate(run, job, ctl.signal),
        new Promise<never>((_, reject) =>
          ctl.signal.addEventListener('abort', () => reject(ctl.signal.reason), { once: true }),
        ),
      ]);
    } finally {
      clearTimeout(timer);
      outer?.removeEventListener('abort', stop);
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
