import type { TrainConfig } from '../config/train-config.js';
import type { Backend } from '../kernels/backend.js';
import type { KeyPosition } from '../rl/key-positions.js';
import type { RolloutJob } from '../rl/rollout-job.js';
import type { Rollout } from '../rl/rollouts.js';
import type { DataRoot } from './data-root.js';
import type { EvalMode, EvalResult } from './evaluate.js';
import type { LearnerApi, RolloutEndpoint } from './interfaces.js';
import { type CoordinatorState, Learner, LearnerError, type LearnerStart } from './learner.js';
import { openTokenizer } from './open-files.js';
import { checkOutDir } from './out-dir.js';
import type { Policy, PolicySource } from './policy.js';
import type { JobResult, RolloutWorker } from './rollout-worker.js';
import { RunContexts, type RunRef } from './run-context.js';

/**
 * Holds the learner of one run at a time, for the embedded run and the learner service alike:
 * InitRun for the run it holds is idempotent, for another run it is refused.
 */
export class LearnerHost implements LearnerApi, PolicySource {
  private current: { runId: string; learner: Learner } | null = null;
  /** True when the run held has just checkpointed (stopped or finished): another run may take over. */
  private idle = true;

  /** With a data root (the learner service), a run's paths are resolved under it, and refused outside. */
  constructor(
    private readonly backend: Backend,
    private readonly root?: DataRoot,
  ) {}

  get backendName(): string {
    return this.backend.name;
  }

  async init(run: RunRef): Promise<LearnerStart> {
    if (this.current) {
      if (this.current.runId === run.runId) return this.current.learner.start;
      if (!this.idle) {
        throw new LearnerError(
          `the learner is training run "${this.current.runId}"; it cannot start "${run.runId}" until that run stops`,
          'precondition',
        );
      }
      this.release();
    }
    const cfg = this.root ? this.root.config(run.cfg) : run.cfg;
    // Checkpoints of one run never go into the folder of another.
    checkOutDir(cfg, { strict: false });
    const tokenizer = await openTokenizer(cfg.model.init_from, 'model.init_from');
    const learner = new Learner(cfg, this.backend, tokenizer.eosId);
    this.current = { runId: run.runId, learner };
    return learner.start;
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
  ): Promise<Record<string, number>> {
    // Busy only once the request has passed its checks: a refused call must not lock the learner.
    // A step refused later (a non-finite loss) changed nothing either, so the flag goes back.
    const learner = this.learner(run.runId);
    const before = { idle: this.idle, step: learner.step };
    return learner
      .trainStep(step, groups, positions, versions, () => {
        this.idle = false;
      })
      .catch((e: unknown) => {
        if (learner.step === before.step && this.current?.learner === learner) this.idle = before.idle;
        throw e;
      });
  }

  async checkpoint(run: RunRef, state: CoordinatorState): Promise<string> {
    const dir = await this.learner(run.runId).checkpoint(state);
    this.idle = true;
    return dir;
  }

  async saveFinal(run: RunRef): Promise<string> {
    const dir = await this.learner(run.runId).saveFinal();
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
