import type { AdamWConfig } from '../model/adamw.js';
import type { LrSchedule } from '../model/lr-schedule.js';
import type { PretrainConfig } from './pretrain-config.js';
import type { TrainConfig } from './train-config.js';

/**
 * The optimizer fields every training config's `train` section has (pre-training and RL alike),
 * as the schema declares them (schema/common-fields.ts: optimizerFields).
 */
export type OptimizerSettings = Pick<
  PretrainConfig['train'] & TrainConfig['train'],
  'steps' | 'lr' | 'lr_min' | 'warmup_steps' | 'beta1' | 'beta2' | 'eps' | 'weight_decay' | 'max_grad_norm'
>;

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
