import { RunConfigError } from './merge.js';
import type { OptimizerSettings } from './optimizer-config.js';

/**
 * What values a numeric setting may take. Every check names the field; a value outside its range
 * is refused when the config is loaded, before anything runs (a negative learning rate trains
 * backwards, a NaN one fails a service much later with a message about JSON nulls).
 */
export interface Range {
  int?: boolean;
  /** Inclusive bounds. */
  min?: number;
  max?: number;
  /** Exclusive bounds. */
  above?: number;
  below?: number;
}

function describe(r: Range): string {
  const parts: string[] = [];
  if (r.min !== undefined) parts.push(`>= ${r.min}`);
  if (r.above !== undefined) parts.push(`> ${r.above}`);
  if (r.max !== undefined) parts.push(`<= ${r.max}`);
  if (r.below !== undefined) parts.push(`< ${r.below}`);
  const what = r.int ? 'an integer' : 'a finite number';
  return parts.length ? `${what} ${parts.join(' and ')}` : what;
}

export function inRange(v: unknown, r: Range): boolean {
  if (typeof v !== 'number' || !Number.isFinite(v)) return false;
  if (r.int && !Number.isSafeInteger(v)) return false;
  if (r.min !== undefined && v < r.min) return false;
  if (r.max !== undefined && v > r.max) return false;
  if (r.above !== undefined && !(v > r.above)) return false;
  if (r.below !== undefined && !(v < r.below)) return false;
  return true;
}

/** Checks `value` (a config's field) against `r`; the error names `field` and the range. */
export function checkRange(source: string, field: string, value: unknown, r: Range): void {
  if (!inRange(value, r)) {
    throw new RunConfigError(source, field, `must be ${describe(r)}, got ${String(value)}`);
  }
}

/** Checks a list of numbers: its length and each element. */
export function checkList(source: string, field: string, value: unknown, length: number, r: Range): number[] {
  if (!Array.isArray(value) || value.length !== length) {
    throw new RunConfigError(source, field, `must be a list of ${length} numbers`);
  }
  for (const [i, v] of value.entries()) checkRange(source, `${field}[${i}]`, v, r);
  return value as number[];
}

/** The optimizer's ranges, shared by pre-training and RL configs (as torch.optim.AdamW checks them). */
export function checkOptimizer(source: string, t: OptimizerSettings): void {
  checkRange(source, 'train.steps', t.steps, { int: true, min: 1 });
  checkRange(source, 'train.lr', t.lr, { above: 0 });
  checkRange(source, 'train.lr_min', t.lr_min, { min: 0, max: t.lr });
  checkRange(source, 'train.warmup_steps', t.warmup_steps, { int: true, min: 0 });
  checkRange(source, 'train.beta1', t.beta1, { min: 0, below: 1 });
  checkRange(source, 'train.beta2', t.beta2, { min: 0, below: 1 });
  checkRange(source, 'train.eps', t.eps, { above: 0 });
  checkRange(source, 'train.weight_decay', t.weight_decay, { min: 0 });
  checkRange(source, 'train.max_grad_norm', t.max_grad_norm, { min: 0 });
}
