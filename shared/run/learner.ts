import { adamwConfig, lrSchedule } from '../config/optimizer-config.js';
import { METHOD_TABLE } from '../config/rmt-defaults.js';
import type { TrainConfig } from '../config/train-config.js';
import type { Backend, Buf } from '../kernels/backend.js';
import { AdamW } from '../model/adamw.js';
import type { ModelConfig } from '../model/config.js';
import { Decoder } from '../model/decoder.js';
import { learningRate } from '../model/lr-schedule.js';
import { numel, paramSpecs } from '../model/params.js';
import { downloadParams, uploadParams } from '../model/weights.js';
import { type DualLossMetrics, dualLossAndGrad } from '../rl/dual-loss.js';
import type { KeyPosition } from '../rl/key-positions.js';
import type { Rollout } from '../rl/rollouts.js';
import { optimizerState, RunDir, restoreOptimizer } from '../run-dir/run-dir.js';
import type { RngState } from '../util/rng.js';
import { ReadWriteLock } from '../util/rw-lock.js';
import { checkDataParallel, type RunPeers, ShardGradientSlot } from './data-parallel.js';
import { GradientSum } from './gradient-reduce.js';
import type { DataParallelStep } from './gradient-shards.js';
import { openCheckpoint } from './open-files.js';
import type { Policy, PolicySource } from './policy.js';
import { RequestError, type RequestErrorKind } from './request-error.js';
import {
  checkGroupVersions,
  checkTrainStep,
  maxStepKeyPositions,
  trainStepDigest,
} from './train-step-check.js';

/** What the coordinator keeps in a checkpoint beside the learner's state. */
export interface CoordinatorState extends Record<string, unknown> {
  rng: RngState;
}

export interface LearnerStart {
  /** The learner's step count now: the checkpoint's when it has just loaded the run. */
  step: number;
  /**
   * The coordinator state saved with the checkpoint resumed from (null for a fresh run, and once
   * the learner has stepped past that checkpoint: the state no longer matches `step`).
   */
  extra: Record<string, unknown> | null;
  resumedFrom: string | null;
  /** Seconds without a call from the run's coordinator before the learner lets the run go (0: never). */
  leaseS?: number;
}

/** A request the learner refuses (see RequestError for what each kind tells the caller). */
export class LearnerError extends RequestError {
  constructor(message: string, kind: RequestErrorKind, field?: string) {
    super(message, kind, field);
    this.name = 'LearnerError';
  }
}

/**
 * The learner (docs/method.md section 5): parameters and AdamW state, the dual loss L = L_RL + lambda L_NTP
 * with one optimizer step per training step, and checkpoints. Its step count is the weight version
 * rollout workers report. It resumes from the newest checkpoint in run.out_dir.
 */
export class Learner implements PolicySource {
  readonly config: ModelConfig;
  readonly model: Decoder;
  readonly start: LearnerStart;
  private readonly reference?: Decoder;
  private readonly opt: AdamW;
  private readonly dir: RunDir;
  private readonly shapes: Map<string, number[]>;
  private stepCount: number;
  private last: { step: number; digest: string; metrics: Record<string, number> } | null = null;
  /** The newest checkpoint this learner loaded or wrote, with the coordinator state stored in it. */
  private saved: LearnerStart;
  /** Updates and checkpoints take turns. */
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * Weight reads (GetWeights) and writes (the optimizer step, a follower taking the leader's
   * weights): a read never sees a half-applied step, and it need not wait for an update that is
   * still computing or waiting on other learners (a follower pulls the weights of that very step).
   */
  private readonly weightsLock = new ReadWriteLock();
  /** As a data-parallel follower: the gradient of its last shard, until the leader pulls it. */
  readonly shardGradient = new ShardGradientSlot();
  /** As a follower: whether the weights are the leader's of `stepCount` (false until pulled). */
  private synced = false;
  /** True once this learner took a step as a follower: it then writes no checkpoints. */
  private following = false;

  /**
   * `padId`: the tokenizer's end-of-text id, which pads loss batches (masked out of the loss).
   * `peers`: how this run's data-parallel learners reach one another (none: one learner only).
   */
  constructor(
    readonly cfg: TrainConfig,
    readonly backend: Backend,
    private readonly padId: number,
    private readonly peers?: RunPeers,
  ) {
    if (!cfg.model.init_from)
      throw new LearnerError('model.init_from: a pre-trained checkpoint folder is required', 'argument');
    this.dir = new RunDir(cfg);
    const resumeFrom = this.dir.latestCheckpoint();
    const ck = resumeFrom
      ? openCheckpoint(resumeFrom, 'run.out_dir')
      : openCheckpoint(cfg.model.init_from, 'model.init_from');
    this.config = ck.config;
    this.model = new Decoder(ck.config, backend, uploadParams(backend, ck.params));
    this.reference =
      cfg.grpo.beta !== 0
        ? new Decoder(
            ck.config,
            backend,
            uploadParams(backend, openCheckpoint(cfg.model.init_from, 'model.init_from').params),
          )
        : undefined;
    const specs = paramSpecs(ck.config);
    this.shapes = new Map(specs.map((p) => [p.name, p.shape]));
    this.opt = new AdamW(backend, specs, adamwConfig(cfg.train));
    this.stepCount = 0;
    let extra: Record<string, unknown> | null = null;
    if (resumeFrom && ck.training) {
      this.stepCount = ck.training.step;
      restoreOptimizer(this.opt, ck.training);
      extra = { ...(ck.training.extra ?? {}), rng: ck.training.rng };
    }
    this.start = { step: this.stepCount, extra, resumedFrom: resumeFrom && ck.training ? resumeFrom : null };
    this.saved = this.start;
  }

  /**
   * Where the run stands: the step count now, and the coordinator state of the newest checkpoint
   * while the weights are still those of that checkpoint (null once the learner stepped past it).
   */
  where(): LearnerStart {
    const at = this.saved.step === this.stepCount;
    return {
      step: this.stepCount,
      extra: at ? this.saved.extra : null,
      resumedFrom: at ? this.saved.resumedFrom : null,
    };
  }

  shapeOf(name: string): number[] {
    const s = this.shapes.get(name);
    if (!s) throw new Error(`no parameter "${name}"`);
    return s;
  }

  get step(): number {
    return this.stepCount;
  }

  /** The embedded worker samples from the learner's own model: version = steps taken. */
  async acquire(_runId: string, minVersion: number): Promise<Policy> {
    if (minVersion > this.stepCount) {
      throw new LearnerError(
        `weight version ${minVersion} asked for, learner is at ${this.stepCount}`,
        'precondition',
      );
    }
    return { model: this.model, version: this.stepCount };
  }

  /**
   * One update: the dual loss on `groups` (the GRPO term) and the NTP tokens of `positions`, then
   * AdamW. `versions` holds the weight version each group was sampled at (default: this step, i.e.
   * on-policy); each must lie in [step - distributed.max_staleness, step], and a group older than
   * the learner's weights is trained with its sampler's log-probs as pi_old (see dualLossAndGrad). `step` must be the learner's step; a repeat of the step just taken with the same request
   * (a retried call, same digest) returns the same metrics without stepping twice, a different
   * request for that step is refused. Every number of the request is checked before anything is
   * computed (`accepted` is called once it passed, before the update starts), and a step whose loss
   * or gradient is not finite is refused before AdamW touches the weights.
   */
  async trainStep(
    step: number,
    groups: Rollout[][],
    positions: KeyPosition[],
    versions: readonly number[] = groups.map(() => step),
    accepted?: () => void,
    /** This step is one shard of a step split over data-parallel learners (see DataParallelStep). */
    dp?: DataParallelStep,
    signal?: AbortSignal,
  ): Promise<Record<string, number>> {
    // The step first (cheap, and what a caller out of order needs to hear), then every number. A
    // follower takes any step: it first follows the leader's weights to it.
    const follower = dp !== undefined && dp.rank > 0;
    if (!follower) this.checkStepNumber(step);
    checkTrainStep(groups, positions, {
      vocabSize: this.config.vocab_size,
      maxPositions: this.config.max_position_embeddings,
      cfg: this.cfg,
    });
    checkGroupVersions(versions, groups.length, step, this.cfg.distributed.max_staleness);
    if (dp) {
      const { train, grpo, budget, data } = this.cfg;
      checkDataParallel(dp, groups, positions, {
        rlTokens: train.positions_per_step * grpo.G * budget.hard_cap,
        ntpTokens: maxStepKeyPositions(this.cfg) * (data.context_len + data.continuation_len),
        keyIds: maxStepKeyPositions(this.cfg),
      });
    }
    if (dp && dp.peers.length > 1 && !this.peers)
      throw new LearnerError('data_parallel: this learner cannot reach other learners', 'precondition');
    if (follower)
      return this.exclusive(() => this.followerStep(step, groups, positions, versions, dp, accepted, signal));
    const digest = trainStepDigest(step, groups, positions, versions);
    return this.exclusive(async () => {
      if (this.last && step === this.last.step && step === this.stepCount - 1) {
        if (digest === this.last.digest) return this.last.metrics;
        throw new LearnerError(
          `train step ${step} was already taken with a different request; the learner's next step is ${this.stepCount}`,
          'conflict',
        );
      }
      this.checkStepNumber(step);
      // A follower's optimizer state stayed where it was loaded while its weights followed the
      // leader's: it must not take an update of its own.
      if (this.following) {
        throw new LearnerError(
          `this learner followed another leader in this run and holds no optimizer state of it; restart it to lead`,
          'precondition',
        );
      }
      accepted?.();
      const metrics = await this.update(step, groups, positions, versions, dp, signal);
      this.last = { step, digest, metrics };
      return metrics;
    });
  }

  /** Forgets that the weights are the leader's: a follower pulls them again before its next shard. */
  unsync(): void {
    this.synced = false;
    this.shardGradient.clear();
  }

  /**
   * A follower's shard: the weights made the leader's of `step` (pulled unless already held), the
   * shard's gradient under the whole step's normalisers, kept for the leader to pull. Answers the
   * shard's own (additive) metrics; the weights move only when the next step pulls the leader's.
   * A leader already past `step` (a retried step it has taken) leaves nothing to compute.
   */
  private async followerStep(
    step: number,
    groups: Rollout[][],
    positions: KeyPosition[],
    versions: readonly number[],
    dp: DataParallelStep,
    accepted: (() => void) | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Record<string, number>> {
    if (!this.synced || this.stepCount !== step) {
      const got = await this.peers!.weights(dp.peers[0], step, signal);
      if (got.version !== step && got.version !== step + 1) {
        throw new LearnerError(
          `train step ${step} asked for, the leader ${dp.peers[0]} is at step ${got.version}`,
          'precondition',
        );
      }
      await this.weightsLock.write(async () => {
        this.install(got.weights);
        this.stepCount = got.version;
      });
      this.synced = true;
      this.shardGradient.clear();
      if (got.version === step + 1) return {};
    }
    accepted?.();
    this.following = true;
    const { grads, metrics } = await this.shardLossAndGrad(groups, positions, versions, dp);
    const host = await downloadParams(this.backend, grads);
    for (const g of grads.values()) this.backend.free(g);
    const out = { ...metrics } as Record<string, number>;
    this.shardGradient.put(step, host, out);
    return out;
  }

  /** The leader's weights in place of this learner's (a follower keeps no optimizer state). */
  private install(weights: Map<string, Float32Array>): void {
    if (weights.size !== this.shapes.size)
      throw new LearnerError(
        `the leader sent ${weights.size} tensors, the model has ${this.shapes.size}`,
        'precondition',
      );
    for (const [name, shape] of this.shapes) {
      const w = weights.get(name);
      if (!w || w.length !== numel(shape))
        throw new LearnerError(`the leader's weights lack "${name}" or have another size`, 'precondition');
    }
    for (const [name, w] of weights) {
      const old = this.model.params.get(name);
      this.model.params.set(name, this.backend.upload(w));
      if (old) this.backend.free(old);
    }
  }

  private checkStepNumber(step: number): void {
    const retry = this.last !== null && step === this.last.step && step === this.stepCount - 1;
    if (step !== this.stepCount && !retry) {
      throw new LearnerError(
        `train step ${step} asked for, the learner's next step is ${this.stepCount}`,
        'precondition',
      );
    }
  }

  private async update(
    step: number,
    groups: Rollout[][],
    positions: KeyPosition[],
    versions: readonly number[],
    dp: DataParallelStep | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Record<string, number>> {
    const t0 = performance.now();
    let { grads, metrics } = await this.shardLossAndGrad(groups, positions, versions, dp);
    if (dp && dp.peers.length > 1) ({ grads, metrics } = await this.reduce(step, grads, metrics, dp, signal));
    await this.refuseNonFinite(step, metrics, grads);
    const lr = learningRate(lrSchedule(this.cfg.train), step);
    const { gradNorm } = await this.weightsLock.write(async () => {
      const r = await this.opt.update(this.model.params, grads, lr);
      this.stepCount++;
      return r;
    });
    return {
      'actor/pg_loss': metrics['actor/pg_loss'],
      'actor/ntp_loss': metrics['actor/ntp_loss'],
      'actor/pg_clipfrac': metrics['actor/pg_clipfrac'],
      'actor/ppo_kl': metrics['actor/ppo_kl'],
      'actor/grad_norm': gradNorm,
      'actor/lr': lr,
      'timing_s/update': (performance.now() - t0) / 1000,
      rl_tokens: metrics.rl_tokens,
      ntp_tokens: metrics.ntp_tokens,
    };
  }

  /**
   * The leader's sum of every shard's gradient: its own first, then each follower's pulled in rank
   * order (shared/run/gradient-reduce.ts); the metrics are the shards' sums, i.e. the whole step's.
   */
  private async reduce(
    step: number,
    grads: Map<string, Buf>,
    metrics: DualLossMetrics,
    dp: DataParallelStep,
    signal: AbortSignal | undefined,
  ): Promise<{ grads: Map<string, Buf>; metrics: DualLossMetrics }> {
    const own = await downloadParams(this.backend, grads);
    for (const g of grads.values()) this.backend.free(g);
    const sum = new GradientSum(this.shapes, step);
    sum.addLocal(0, own, { ...metrics });
    for (let r = 1; r < dp.peers.length; r++) {
      await sum.addStream(r, this.peers!.gradient(dp.peers[r], step, r, signal));
    }
    const total = sum.result();
    return {
      grads: uploadParams(this.backend, total.grads),
      metrics: { ...metrics, ...(total.metrics as Partial<DualLossMetrics>) },
    };
  }

  /** The dual loss and gradient of the groups and positions given (a shard, or the whole step). */
  private shardLossAndGrad(
    groups: Rollout[][],
    positions: KeyPosition[],
    versions: readonly number[],
    dp: DataParallelStep | undefined,
  ) {
    const spec = METHOD_TABLE[this.cfg.method];
    return dualLossAndGrad(
      this.model,
      groups,
      positions,
      {
        clip: this.cfg.grpo,
        adv_eps: this.cfg.grpo.adv_eps,
        G: this.cfg.grpo.G,
        lambda: spec.reward === 'none' ? 1 : this.cfg.loss.lambda,
        useNtp: spec.ntp_loss || spec.reward === 'none',
        // the rollouts' sampling temperature: L_RL is on the policy that sampled (see DualLossOptions)
        temperature: this.cfg.grpo.temperature,
        microBatch: this.cfg.train.micro_batch,
        padId: this.padId,
        totals: dp?.totals,
      },
      this.reference,
      versions.map((v) => v < this.stepCount),
    );
  }

  /**
   * A non-finite loss or gradient must never reach the weights: one NaN there turns every weight
   * into NaN at the next step. The step is refused (gradients freed, weights and optimizer state
   * unchanged) with the step and the cause.
   */
  private async refuseNonFinite(
    step: number,
    metrics: DualLossMetrics,
    grads: Map<string, Buf>,
  ): Promise<void> {
    let cause = '';
    for (const k of ['actor/pg_loss', 'actor/ntp_loss', 'actor/ppo_kl', 'actor/kl_loss'] as const) {
      const v = metrics[k];
      if (v !== undefined && !Number.isFinite(v)) {
        cause = `${k} = ${v}`;
        break;
      }
    }
    if (!cause) {
      const be = this.backend;
      const gs = [...grads.values()];
      const squares = be.sumSquaresMany
        ? await be.sumSquaresMany(gs)
        : await Promise.all(gs.map((g) => be.sumSquares(g)));
      const names = [...grads.keys()];
      const i = squares.findIndex((x) => !Number.isFinite(x));
      if (i >= 0) cause = `the gradient of ${names[i]} is not finite`;
    }
    if (!cause) return;
    for (const g of grads.values()) this.backend.free(g);
    throw new LearnerError(
      `train step ${step} refused: ${cause}; the weights are unchanged (step ${step} was not taken)`,
      'precondition',
    );
  }

  /** The weights and the version they are, read between updates. */
  snapshot(): Promise<{ version: number; weights: Map<string, Float32Array> }> {
    return this.weightsLock.read(async () => ({
      version: this.stepCount,
      weights: await downloadParams(this.backend, this.model.params),
    }));
  }

  private weights(): Promise<Map<string, Float32Array>> {
    return downloadParams(this.backend, this.model.params);
  }

  private exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * A training checkpoint at the current step with the coordinator's state; prunes old ones. A
   * data-parallel follower writes none ('' back): the leader's checkpoint is the run's.
   */
  checkpoint(extra: CoordinatorState): Promise<string> {
    return this.exclusive(async () => (this.following ? '' : this.writeCheckpoint(extra)));
  }

  private async writeCheckpoint(extra: CoordinatorState): Promise<string> {
    const step = this.stepCount;
    const { rng, ...rest } = extra;
    const dir = await this.dir.saveCheckpoint(step, {
      config: this.config,
      params: await this.weights(),
      tokenizerDir: this.cfg.model.init_from,
      training: {
        step,
        rng,
        dataPosition: { kind: 'sampled-key-positions' },
        optimizer: await optimizerState(this.opt, {
          lr: this.cfg.train.lr,
          beta1: this.cfg.train.beta1,
          beta2: this.cfg.train.beta2,
          weight_decay: this.cfg.train.weight_decay,
        }),
        extra: rest,
      },
    });
    this.saved = { step, extra: { ...rest, rng }, resumedFrom: dir };
    return dir;
  }

  /** `final/`: weights only, loadable by `rmt eval` and by PyTorch. */
  saveFinal(): Promise<string> {
    return this.exclusive(async () => (this.following ? '' : this.writeFinal()));
  }

  private async writeFinal(): Promise<string> {
    return this.dir.saveFinal({
      config: this.config,
      params: await this.weights(),
      tokenizerDir: this.cfg.model.init_from,
    });
  }

  dispose(): void {
    for (const m of [this.model, this.reference]) {
      if (m) for (const b of m.params.values()) this.backend.free(b);
    }
  }
}
