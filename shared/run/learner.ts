import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { adamwConfig, lrSchedule } from '../config/optimizer-config.js';
import { METHOD_TABLE } from '../config/rmt-defaults.js';
import type { TrainConfig } from '../config/train-config.js';
import type { Backend } from '../kernels/backend.js';
import { AdamW } from '../model/adamw.js';
import {
  checkpointDir,
  checkpointStep,
  latestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  saveCheckpoint,
} from '../model/checkpoint.js';
import type { ModelConfig } from '../model/config.js';
import { Decoder } from '../model/decoder.js';
import { learningRate } from '../model/lr-schedule.js';
import { paramSpecs } from '../model/params.js';
import { downloadParams, uploadParams } from '../model/weights.js';
import { dualLossAndGrad } from '../rl/dual-loss.js';
import type { KeyPosition } from '../rl/key-positions.js';
import type { Rollout } from '../rl/rollouts.js';
import type { RngState } from '../util/rng.js';
import type { Policy, PolicySource } from './policy.js';

/** What the coordinator keeps in a checkpoint beside the learner's state. */
export interface CoordinatorState extends Record<string, unknown> {
  rng: RngState;
}

export interface LearnerStart {
  step: number;
  /** The coordinator state saved with the checkpoint resumed from (null for a fresh run). */
  extra: Record<string, unknown> | null;
  resumedFrom: string | null;
}

export class LearnerError extends Error {
  constructor(
    message: string,
    readonly kind: 'precondition' | 'argument',
  ) {
    super(message);
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
  private readonly shapes: Map<string, number[]>;
  private stepCount: number;
  private last: { step: number; metrics: Record<string, number> } | null = null;
  /** Updates, weight reads and checkpoints take turns: a read never sees a half-applied step. */
  private queue: Promise<unknown> = Promise.resolve();

  /** `padId`: the tokenizer's end-of-text id, which pads loss batches (masked out of the loss). */
  constructor(
    readonly cfg: TrainConfig,
    readonly backend: Backend,
    private readonly padId: number,
  ) {
    if (!cfg.model.init_from)
      throw new LearnerError('model.init_from: a pre-trained checkpoint folder is required', 'argument');
    const out = resolve(cfg.run.out_dir);
    const resumeFrom = latestCheckpoint(out);
    const ck = loadCheckpoint(resumeFrom ?? cfg.model.init_from);
    this.config = ck.config;
    this.model = new Decoder(ck.config, backend, uploadParams(backend, ck.params));
    this.reference =
      cfg.grpo.beta !== 0
        ? new Decoder(ck.config, backend, uploadParams(backend, loadCheckpoint(cfg.model.init_from).params))
        : undefined;
    const specs = paramSpecs(ck.config);
    this.shapes = new Map(specs.map((p) => [p.name, p.shape]));
    this.opt = new AdamW(backend, specs, adamwConfig(cfg.train));
    this.stepCount = 0;
    let extra: Record<string, unknown> | null = null;
    if (resumeFrom && ck.training) {
      this.stepCount = ck.training.step;
      this.opt.step = ck.training.step;
      this.opt.m = uploadParams(backend, ck.training.optimizer.m);
      this.opt.v = uploadParams(backend, ck.training.optimizer.v);
      extra = { ...(ck.training.extra ?? {}), rng: ck.training.rng };
    }
    this.start = { step: this.stepCount, extra, resumedFrom: resumeFrom && ck.training ? resumeFrom : null };
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
   * AdamW. `step` must be the learner's step; a repeat of the step just taken (a retried call)
   * returns the same metrics without stepping twice.
   */
  async trainStep(
    step: number,
    groups: Rollout[][],
    positions: KeyPosition[],
  ): Promise<Record<string, number>> {
    if (this.last && step === this.last.step && step === this.stepCount - 1) return this.last.metrics;
    if (step !== this.stepCount) {
      throw new LearnerError(
        `train step ${step} asked for, the learner's next step is ${this.stepCount}`,
        'precondition',
      );
    }
    const spec = METHOD_TABLE[this.cfg.method];
    const t0 = performance.now();
    const { grads, metrics } = await dualLossAndGrad(
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
      },
      this.reference,
    );
    const lr = learningRate(lrSchedule(this.cfg.train), step);
    const { gradNorm } = await this.opt.update(this.model.params, grads, lr);
    this.stepCount++;
    const out = {
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
    this.last = { step, metrics: out };
    return out;
  }

  /** The weights and the version they are, read between updates. */
  snapshot(): Promise<{ version: number; weights: Map<string, Float32Array> }> {
    return this.exclusive(async () => ({
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

  /** A training checkpoint at the current step with the coordinator's state; prunes old ones. */
  checkpoint(extra: CoordinatorState): Promise<string> {
    return this.exclusive(() => this.writeCheckpoint(extra));
  }

  private async writeCheckpoint(extra: CoordinatorState): Promise<string> {
    const out = resolve(this.cfg.run.out_dir);
    const step = this.stepCount;
    const dir = checkpointDir(out, step);
    const { rng, ...rest } = extra;
    saveCheckpoint(dir, {
      config: this.config,
      params: await this.weights(),
      tokenizerDir: this.cfg.model.init_from,
      training: {
        step,
        rng,
        dataPosition: { kind: 'sampled-key-positions' },
        optimizer: {
          m: await downloadParams(this.backend, this.opt.m),
          v: await downloadParams(this.backend, this.opt.v),
          hyper: {
            lr: this.cfg.train.lr,
            beta1: this.cfg.train.beta1,
            beta2: this.cfg.train.beta2,
            weight_decay: this.cfg.train.weight_decay,
          },
        },
        extra: rest,
      },
    });
    const all = listCheckpoints(out);
    for (const old of all.slice(0, Math.max(0, all.length - this.cfg.checkpoint.keep))) {
      if (checkpointStep(old) !== this.cfg.train.steps) rmSync(old, { recursive: true, force: true });
    }
    return dir;
  }

  /** `final/`: weights only, loadable by `rmt eval` and by PyTorch. */
  saveFinal(): Promise<string> {
    return this.exclusive(() => this.writeFinal());
  }

  private async writeFinal(): Promise<string> {
    const dir = join(resolve(this.cfg.run.out_dir), 'final');
    saveCheckpoint(dir, {
      config: this.config,
      params: await this.weights(),
      tokenizerDir: this.cfg.model.init_from,
    });
    return dir;
  }

  dispose(): void {
    for (const m of [this.model, this.reference]) {
      if (m) for (const b of m.params.values()) this.backend.free(b);
    }
  }
}
