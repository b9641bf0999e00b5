import type { TrainConfig } from '../config/train-config.js';
import type { Backend } from '../kernels/backend.js';
import type { KeyPosition } from '../rl/key-positions.js';
import type { RolloutJob } from '../rl/rollout-job.js';
import type { Rollout } from '../rl/rollouts.js';
import { type LearnerPeers, runPeers } from './data-parallel.js';
import type { DataRoot } from './data-root.js';
import type { EvalMode, EvalResult } from './evaluate.js';
import type { DataParallelStep } from './gradient-shards.js';
import type { LearnerApi, RolloutEndpoint } from './interfaces.js';
import { type CoordinatorState, Learner, LearnerError, type LearnerStart } from './learner.js';
import { openTokenizer } from './open-files.js';
import { checkOutDir } from './out-dir.js';
import type { Policy, PolicySource } from './policy.js';
import type { JobResult, RolloutWorker } from './rollout-worker.js';
import { RunContexts, type RunRef } from './run-context.js';

export interface LearnerHostOptions {
  /**
   * Seconds without a call from the coordinator holding a run (RunRef.holder) after which the host
   * lets the run go; 0 or unset: never (the embedded run, whose coordinator is this process).
   */
  leaseS?: number;
  /** Told when a run is let go because its lease ran out. */
  onLeaseExpired?: (runId: string, idleS: number) => void;
  /** How this learner reaches the others of a data-parallel step (unset: it takes whole steps only). */
  peers?: LearnerPeers;
}

/**
 * Holds the learner of one run at a time, for the embedded run and the learner service alike:
 * InitRun for the run it holds is idempotent, for another run it is refused.
 *
 * A run started by a coordinator with an id (`RunRef.holder`) is held under a lease that each of
 * its calls renews. While the lease runs, calls from another coordinator are refused; once it has
 * run out (the coordinator is gone) the run is let go, and whoever asks next loads it again from
 * its newest checkpoint, which is how a restarted coordinator picks its run up.
 */
export class LearnerHost implements LearnerApi, PolicySource {
  private current: { runId: string; learner: Learner } | null = null;
  /** True when the run held has just checkpointed (stopped or finished): another run may take over. */
  private idle = true;
  private readonly lease = { holder: '', lastSeen: 0, inFlight: 0 };
  private readonly timer: NodeJS.Timeout | null = null;

  /** With a data root (the learner service), a run's paths are resolved under it, and refused outside. */
  constructor(
    private readonly backend: Backend,
    private readonly root?: DataRoot,
    private readonly o: LearnerHostOptions = {},
  ) {
    if (this.leaseMs > 0) {
      this.timer = setInterval(() => this.expire(), Math.min(1000, this.leaseMs / 4));
      this.timer.unref();
    }
  }

  get backendName(): string {
    return this.backend.name;
  }

  private get leaseMs(): number {
    return (this.o.leaseS ?? 0) * 1000;
  }

  async init(run: RunRef): Promise<LearnerStart> {
    this.expire();
    const holder = run.holder ?? '';
    if (this.current) {
      if (this.current.runId === run.runId) {
        this.checkHolder(run);
        this.touch(holder);
        // A coordinator that connects again may have found the leader elsewhere: a follower pulls
        // the leader's weights again before its next shard.
        this.current.learner.unsync();
        return this.startNow();
      }
      if (!this.idle) {
        throw new LearnerError(
          `the learner is training run "${this.current.runId}"${this.leaseNote()}; it cannot start "${run.runId}" until that run stops`,
          'busy',
        );
      }
      this.release();
    }
    const cfg = this.root ? this.root.config(run.cfg) : run.cfg;
    // Checkpoints of one run never go into the folder of another.
    checkOutDir(cfg, { strict: false });
    const tokenizer = await openTokenizer(cfg.model.init_from, 'model.init_from');
    // Another init may have loaded a run while the tokenizer was read.
    if (this.current) return this.init(run);
    const peers = this.o.peers ? runPeers(this.o.peers, run.runId) : undefined;
    const learner = new Learner(cfg, this.backend, tokenizer.eosId, peers);
    this.current = { runId: run.runId, learner };
    this.lease.holder = this.leaseMs > 0 ? holder : '';
    this.lease.lastSeen = Date.now();
    return this.startNow();
  }

  /** Where the run held is now: its real step, and the checkpoint state only while it matches. */
  private startNow(): LearnerStart {
    return { ...this.current!.learner.where(), leaseS: this.lease.holder ? this.leaseMs / 1000 : 0 };
  }

  /** Calls naming a coordinator other than the one holding the run's lease are refused. */
  private checkHolder(run: RunRef): void {
    const holder = run.holder ?? '';
    if (this.leaseMs > 0 && holder && this.lease.holder && holder !== this.lease.holder) {
      throw new LearnerError(`run "${run.runId}" is held by another coordinator${this.leaseNote()}`, 'busy');
    }
  }

  private leaseNote(): string {
    if (!this.lease.holder || this.leaseMs === 0) return '';
    const idle = (Date.now() - this.lease.lastSeen) / 1000;
    return ` (its coordinator was last heard ${idle.toFixed(1)} s ago; the learner lets it go after ${this.leaseMs / 1000} s)`;
  }

  private touch(holder: string): void {
    // Without a lease (the embedded run) no coordinator holds the run: any may drive it.
    if (!holder || this.leaseMs === 0) return;
    // A run loaded without a lease is taken by the first coordinator that names itself.
    if (!this.lease.holder) this.lease.holder = holder;
    if (holder === this.lease.holder) this.lease.lastSeen = Date.now();
  }

  /** Lets the run go when its coordinator has not been heard from for the lease (none in flight). */
  expire(now = Date.now()): void {
    const l = this.lease;
    if (!this.current || !l.holder || this.leaseMs === 0 || l.inFlight > 0) return;
    const idle = now - l.lastSeen;
    if (idle <= this.leaseMs) return;
    const runId = this.current.runId;
    this.release();
    this.o.onLeaseExpired?.(runId, idle / 1000);
  }

  /** Keeps the lease of the run held; refused when it is not held (any more) for this coordinator. */
  async renew(run: Pick<RunRef, 'runId' | 'holder'>): Promise<{ step: number; leaseS: number }> {
    this.expire();
    const learner = this.learner(run.runId);
    const holder = run.holder ?? '';
    if (this.leaseMs > 0 && holder && holder !== this.lease.holder) {
      throw new LearnerError(
        `run "${run.runId}" is not held for this coordinator${this.lease.holder ? this.leaseNote() : ''}: InitRun again`,
        'precondition',
      );
    }
    this.touch(holder);
    return { step: learner.step, leaseS: this.leaseMs / 1000 };
  }

  /** A call of the run's coordinator: checked against the lease, which it renews when it starts and ends. */
  private async held<T>(run: RunRef, work: () => Promise<T>): Promise<T> {
    this.checkHolder(run);
    const holder = run.holder ?? '';
    this.touch(holder);
    this.lease.inFlight++;
    try {
      return await work();
    } finally {
      this.lease.inFlight--;
      this.touch(holder);
    }
  }

  learner(runId: string): Learner {
    if (!this.current) throw new LearnerError('no run: call InitRun first', 'precondition');
    if (this.current.runId !== runId) {
      throw new LearnerError(`the learner holds run "${this.current.runId}", not "${runId}"`, 'precondition');
    }
    return this.current.learner;
  }

  get active(): { runId: string; learner: Learner } | null {
    return this.current;
  }

  trainStep(
    run: RunRef,
    step: number,
    groups: Rollout[][],
    positions: KeyPosition[],
    versions: readonly number[] = groups.map(() => step),
    dp?: DataParallelStep,
    signal?: AbortSignal,
  ): Promise<Record<string, number>> {
    // Busy only once the request has passed its checks: a refused call must not lock the learner.
    // A step refused later (a non-finite loss) changed nothing either, so the flag goes back.
    const learner = this.learner(run.runId);
    return this.held(run, () => {
      const before = { idle: this.idle, step: learner.step };
      return learner
        .trainStep(
          step,
          groups,
          positions,
          versions,
          () => {
            this.idle = false;
          },
          dp,
          signal,
        )
        .catch((e: unknown) => {
          if (learner.step === before.step && this.current?.learner === learner) this.idle = before.idle;
          throw e;
        });
    });
  }

  /** A follower's gradient of `step` for the leader, once computed (shared/run/data-parallel.ts). */
  shardGradient(runId: string, step: number, signal?: AbortSignal) {
    return this.learner(runId).shardGradient.take(step, signal);
  }

  async checkpoint(run: RunRef, state: CoordinatorState): Promise<string> {
    const learner = this.learner(run.runId);
    const dir = await this.held(run, () => learner.checkpoint(state));
    this.idle = true;
    return dir;
  }

  async saveFinal(run: RunRef): Promise<string> {
    const learner = this.learner(run.runId);
    const dir = await this.held(run, () => learner.saveFinal());
    this.idle = true;
    return dir;
  }

  acquire(runId: string, minVersion: number): Promise<Policy> {
    return this.learner(runId).acquire(runId, minVersion);
  }

  /** Frees the run's buffers so the host can take another run. */
  release(): void {
    this.current?.learner.dispose();
    this.current = null;
    this.idle = true;
    this.lease.holder = '';
    this.lease.inFlight = 0;
  }

  /** Stops the lease timer (the process is ending). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
  }
}

/** A rollout worker in this process, as the pool sees it. */
export class LocalEndpoint implements RolloutEndpoint {
  private readonly contexts = new RunContexts();

  constructor(private readonly worker: RolloutWorker) {}

  get id(): string {
    return this.worker.id;
  }

  async generate(run: RunRef, job: RolloutJob, signal?: AbortSignal): Promise<JobResult> {
    return this.worker.generate(await this.context(run), job, signal);
  }

  async evaluate(
    run: RunRef,
    positions: readonly KeyPosition[],
    mode: EvalMode,
    budget: number | null,
    minVersion: number,
    signal?: AbortSignal,
  ): Promise<EvalResult> {
    return this.worker.evaluate(await this.context(run), positions, mode, budget, minVersion, signal);
  }

  private context(run: RunRef) {
    return this.contexts.get(run.runId, configJson(run.cfg));
  }
}

export const configJson = (cfg: TrainConfig): string => JSON.stringify(cfg);
