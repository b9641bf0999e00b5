/**
 * The benchmark's own checks that its data does not decide the outcome:
 *
 * - the stated budget of the pre-training corpus's reasoning examples must carry no information
 *   about what follows `</think>` (`budgetTargetInformation`): a base that could read the answer off
 *   the budget would make any budget schedule that passes through the right values look like
 *   reasoning;
 * - no curriculum tier may be answered by one constant (`topTargetShares`): a tier whose targets are
 *   mostly one token teaches the policy to answer that token, and the rows that sample it most
 *   measure that constant rather than the method.
 */

import type { PretrainConfig } from '../../shared/config/pretrain-config.js';
import type { TrainConfig } from '../../shared/config/train-config.js';
import { evalSplits, isEligible, TIERS, type Tier, tierOf } from '../../shared/curriculum/tiers.js';
import { generateMathDocuments, mathOptionsFromConfig } from '../../shared/data/synthetic-math.js';
import type { KeyPosition } from '../../shared/rl/key-positions.js';
import { type MutualInformation, mutualInformation, topShare } from './information.js';

export interface BudgetInformation {
  /** I(stated budget; the digit after `</think>`), Miller-Madow, bits. */
  target: MutualInformation;
  /** I(stated budget; the answer's leading digit), bits: the carry information the add3 budgets leaked. */
  leading_digit: MutualInformation;
  /** How the corpus states budgets (`data.math.budget_mode`). */
  budget_mode: string;
}

/**
 * The reasoning examples of the math documents a pre-training config trains on (the same options
 * and seed the token streams use), and what their stated budgets say about their targets.
 */
export function budgetTargetInformation(
  cfg: Pick<PretrainConfig, 'data' | 'run'>,
  isOneToken?: (piece: string) => boolean,
): BudgetInformation | null {
  if (!cfg.data.corpora.includes('math')) return null;
  const math = mathOptionsFromConfig(cfg.data.math ?? {});
  const docs = generateMathDocuments({ ...math, isOneToken, split: 'train' }, cfg.run.seed);
  const target: [number, string][] = [];
  const leading: [number, string][] = [];
  for (const d of docs) {
    for (const p of d.problems) {
      const r = p.reasoning;
      if (!r) continue;
      target.push([r.budget, r.target]);
      if (r.digit >= 0) leading.push([r.budget, String(p.answer)[0]]);
    }
  }
  if (target.length === 0) return null;
  return {
    target: mutualInformation(target),
    leading_digit: mutualInformation(leading),
    budget_mode: String(math.budgetMode ?? 'length'),
  };
}

export interface TierShare {
  /** The most frequent target's share of the tier's positions (0 for an empty tier). */
  share: number;
  /** That target's text. */
  target: string | null;
  positions: number;
}

/**
 * Per training tier (the curriculum's disjoint bins, over the positions above its entropy filter)
 * and per evaluation split (RPT's nested ones), the share of the most frequent target.
 */
export function topTargetShares(
  train: readonly KeyPosition[],
  heldOut: readonly KeyPosition[],
  cfg: Pick<TrainConfig, 'curriculum'>,
  decode: (id: number) => string,
): { train: Record<Tier, TierShare>; eval: Record<Tier, TierShare> } {
  const share = (ps: readonly KeyPosition[]): TierShare => {
    const s = topShare(ps.map((p) => p.target));
    return { share: s.share, target: s.value === null ? null : decode(s.value), positions: s.n };
  };
  const eligible = train.filter((p) => isEligible(p.entropy, cfg.curriculum.min_entropy));
  const byTier = (f: (p: KeyPosition, tier: Tier) => boolean, ps: readonly KeyPosition[]) =>
    Object.fromEntries(TIERS.map((tier) => [tier, share(ps.filter((p) => f(p, tier)))])) as Record<
      Tier,
      TierShare
    >;
  return {
    train: byTier((p, tier) => tierOf(p.entropy, cfg.curriculum) === tier, eligible),
    eval: byTier((p, tier) => evalSplits(p.entropy, cfg.curriculum.eval_splits)[tier], heldOut),
  };
}
