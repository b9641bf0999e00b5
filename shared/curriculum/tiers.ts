/**
 * Difficulty tiers of key positions (docs/method.md section 4). Training uses disjoint bins, so a tier mix
 * is a distribution over positions; evaluation uses RPT's nested splits, so accuracies compare
 * with RPT's tables.
 */
import { RMT_DEFAULTS, type TierEdges } from '../config/rmt-defaults.js';

export type Tier = 'easy' | 'medium' | 'hard';

/** Tiers in the order of a tier mix (p_easy, p_medium, p_hard). */
export const TIERS: readonly Tier[] = ['easy', 'medium', 'hard'];

/**
 * Training tier of a difficulty (nats): easy <= edges[0] < medium <= edges[1] < hard. Upper edges
 * are inclusive so that the bins above RPT's `> x` splits line up with them.
 */
export function tierOf(difficulty: number, { edges }: TierEdges = RMT_DEFAULTS.curriculum): Tier {
  if (!(edges[0] <= edges[1])) throw new Error(`tier edges must be ordered (got ${edges.join(', ')})`);
  if (difficulty <= edges[0]) return 'easy';
  if (difficulty <= edges[1]) return 'medium';
  return 'hard';
}

/** RPT's filter: only positions above `min_entropy` are worth reasoning about (strict, as RPT's `>`). */
export function isEligible(entropy: number, min_entropy = RMT_DEFAULTS.curriculum.min_entropy): boolean {
  return entropy > min_entropy;
}

/** Membership in RPT's nested evaluation splits (a hard position is also medium and easy). */
export function evalSplits(
  entropy: number,
  eval_splits: readonly [number, number, number] = RMT_DEFAULTS.curriculum.eval_splits,
): Record<Tier, boolean> {
  return { easy: entropy > eval_splits[0], medium: entropy > eval_splits[1], hard: entropy > eval_splits[2] };
}

export interface Scored {
  id: number;
  /** The value tiers are cut on: entropy, or the blended difficulty when adaptive. */
  difficulty: number;
}

/** Ids of each tier, in input order. */
export function groupByTier(
  items: Iterable<Scored>,
  edges: TierEdges = RMT_DEFAULTS.curriculum,
): Record<Tier, number[]> {
  const out: Record<Tier, number[]> = { easy: [], medium: [], hard: [] };
  for (const { id, difficulty } of items) out[tierOf(difficulty, edges)].push(id);
  return out;
}
