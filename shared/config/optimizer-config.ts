import type { AdamWConfig } from '../model/adamw.js';
import type { LrSchedule } from '../model/lr-schedule.js';

/** The optimizer fields every training config's `train` section has (pre-training and RL alike). */
export interface OptimizerSettings {
  /** Updates over which the learning-rate schedule runs. */
  steps: number;
  /** Peak learning rate, reached after warmup. */
  lr: number;
  /** Floor of the cosine decay. */
  lr_min: number;
  warmup_steps: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay, applied to matrices only. */
  weight_decay: number;
  /** Global-norm clipping threshold; 0 turns clipping off. */
  max_grad_norm: number;
}

export function adamwConfig(t: OptimizerSettings): AdamWConfig {
  return {
    beta1: t.beta1,
    beta2: t.beta2,
    eps: t.eps,
    weightDecay: t.weight_decay,
    maxGradNorm: t.max_grad_norm,
  };
}

export function lrSchedule(t: OptimizerSettings): LrSchedule {
  return { lrMax: t.lr, lrMin: t.lr_min, warmupSteps: t.warmup_steps, totalSteps: t.steps };
}
