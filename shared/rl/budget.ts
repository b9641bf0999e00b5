/**
 * Dynamic token budget (DTB, docs/method.md section 3): the reasoning budget stated in the prompt shrinks
 * geometrically over training, so the policy first learns to reason and then to reason briefly.
 */
import type { BudgetParams } from '../config/rmt-defaults.js';

/**
 * B_t = max(B_min, floor(B_0 * gamma^(t / T))). `t` is clamped to [0, T] so a run that overshoots
 * its planned steps keeps the final budget instead of shrinking further.
 */
export function budgetAt(t: number, T: number, { B_0, B_min, gamma }: BudgetParams): number {
  if (!(T > 0)) throw new Error(`budgetAt: total steps T must be > 0 (got ${T})`);
  if (!(gamma > 0)) throw new Error(`budgetAt: gamma must be > 0 (got ${gamma})`);
  const frac = Math.min(1, Math.max(0, t / T));
  return Math.max(B_min, Math.floor(B_0 * gamma ** frac));
}

/**
 * Budget of the methods without DTB (RPT, RMT w/o DTB): the hard cap at every step. It has the
 * same signature as `budgetAt` so a run picks its schedule once and calls it the same way.
 */
export function fixedBudget(_t: number, _T: number, { hard_cap }: { hard_cap: number }): number {
  return hard_cap;
}

export type BudgetSchedule = (t: number, T: number) => number;

/** The schedule of a method's `budget` column; `none` has no reasoning budget at all. */
export function budgetSchedule(
  kind: 'dtb' | 'fixed',
  params: BudgetParams & { hard_cap: number },
): BudgetSchedule {
  return kind === 'dtb' ? (t, T) => budgetAt(t, T, params) : (t, T) => fixedBudget(t, T, params);
}
