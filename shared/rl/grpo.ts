/**
 * GRPO as pure functions over arrays (docs/method.md section 5): group-relative advantages, the clipped
 * policy loss with an optional k3 KL to a reference, its derivative per token, the logged metrics,
 * and DAPO's dynamic sampling. The learner applies the derivative through the model's weighted
 * cross-entropy: it returns d(sum_r w_r nll_r)/dlogits, so with w_r = dL/dnll_r (nll = -log-prob)
 * the backward pass yields dL/dparams without the model knowing about ratios or clipping.
 */
import { type ClipParams, RMT_DEFAULTS } from '../config/rmt-defaults.js';

type Nums = ArrayLike<number>;

function checkGroups(n: number, G: number): void {
  if (!(Number.isInteger(G) && G >= 1)) throw new Error(`group size G must be a positive integer (got ${G})`);
  if (n % G !== 0) throw new Error(`${n} rewards are not whole groups of G = ${G}`);
}

/**
 * A group of two or more whose rewards are all equal: every advantage is 0, so it carries no
 * gradient. A group of one is not (verl gives it A = r, and DAPO's filter keeps it).
 */
export function isZeroStd(group: Nums): boolean {
  if (group.length < 2) return false;
  for (let i = 1; i < group.length; i++) if (group[i] !== group[0]) return false;
  return true;
}

/**
 * A_i = (r_i - mean_g) / (std_g + adv_eps), rewards laid out group after group (G per group).
 *
 * std_g is the sample standard deviation (divisor G - 1), as in verl's `compute_grpo_outcome_advantage`
 * (torch.std, unbiased by default) and TRL, so advantages match theirs. Following verl, a group of
 * one has mean 0 and std 1 (A = r), and a zero-variance group gets exactly 0 rather than rounding noise.
 */
export function groupAdvantages(rewards: Nums, G: number, adv_eps = RMT_DEFAULTS.grpo.adv_eps): number[] {
  checkGroups(rewards.length, G);
  const out = new Array<number>(rewards.length);
  for (let g = 0; g < rewards.length; g += G) {
    const group = Array.prototype.slice.call(rewards, g, g + G) as number[];
    if (G === 1) {
      out[g] = group[0] / (1 + adv_eps);
      continue;
    }
    if (isZeroStd(group)) {
      out.fill(0, g, g + G);
      continue;
    }
    const mean = group.reduce((s, r) => s + r, 0) / G;
    const std = Math.sqrt(group.reduce((s, r) => s + (r - mean) ** 2, 0) / (G - 1));
    for (let i = 0; i < G; i++) out[g + i] = (group[i] - mean) / (std + adv_eps);
  }
  return out;
}

/** Number of groups whose rewards all match. */
export function zeroStdGroups(rewards: Nums, G: number): number {
  checkGroups(rewards.length, G);
  let n = 0;
  for (let g = 0; g < rewards.length; g += G) {
    if (isZeroStd(Array.prototype.slice.call(rewards, g, g + G))) n++;
  }
  return n;
}

/** `frac_reward_zero_std`: the share of groups with no learning signal. */
export function fracRewardZeroStd(rewards: Nums, G: number): number {
  return rewards.length === 0 ? 0 : zeroStdGroups(rewards, G) / (rewards.length / G);
}

/** Each rollout's advantage repeated over its response tokens, in batch order. */
export function tokenAdvantages(advantages: Nums, responseLengths: Nums): Float64Array {
  if (advantages.length !== responseLengths.length) throw new Error('one response length per advantage');
  let n = 0;
  for (let i = 0; i < responseLengths.length; i++) n += responseLengths[i];
  const out = new Float64Array(n);
  let at = 0;
  for (let i = 0; i < advantages.length; i++) {
    out.fill(advantages[i], at, at + responseLengths[i]);
    at += responseLengths[i];
  }
  return out;
}

export interface ClippedTokenLoss {
  /** -min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A). */
  loss: number;
  /** d loss / d log-prob. */
  dLogProb: number;
  /** The clipped term is the larger loss: this token's gradient is cut (counted in pg_clipfrac). */
  clipped: boolean;
}

/**
 * PPO's pessimistic token loss. When the clipped term wins, the ratio is outside the trust region
 * on the side the advantage pushes towards, so the token contributes no gradient; otherwise the
 * gradient is that of -rho A, i.e. -A rho per unit log-prob.
 */
export function clippedTokenLoss(
  logProb: number,
  oldLogProb: number,
  advantage: number,
  eps_low: number,
  eps_high: number,
): ClippedTokenLoss {
  const rho = Math.exp(logProb - oldLogProb);
  const unclipped = -advantage * rho;
  const clippedLoss = -advantage * Math.min(Math.max(rho, 1 - eps_low), 1 + eps_high);
  if (clippedLoss > unclipped) return { loss: clippedLoss, dLogProb: 0, clipped: true };
  return { loss: unclipped, dLogProb: -advantage * rho, clipped: false };
}

/**
 * k3 estimator of KL(pi || pi_ref) at a sampled token: exp(ref - lp) - (ref - lp) - 1. Unbiased and
 * never negative, which is why GRPO (and verl's `low_var_kl`) use it; verl also clamps it to
 * [-10, 10], which we leave out so the value and its derivative stay exact.
 */
export function k3(logProb: number, refLogProb: number): { value: number; dLogProb: number } {
  const d = refLogProb - logProb;
  const e = Math.exp(d);
  return { value: e - d - 1, dLogProb: 1 - e };
}

export interface PolicyLossInput {
  /** log pi_theta of each response token, all response tokens of the batch (or micro-batch) in order. */
  logProbs: Nums;
  /** log pi_old of the same tokens (the policy that sampled them). */
  oldLogProbs: Nums;
  /** Advantage of each token (its rollout's, see tokenAdvantages). */
  advantages: Nums;
  /** log pi_ref of the same tokens; required when beta > 0. */
  refLogProbs?: Nums;
  /**
   * Denominator of the token-mean: all response tokens of the batch. Defaults to logProbs.length;
   * a learner that splits a batch into micro-batches passes the batch total so the micro-batch
   * gradients add up to the batch's.
   */
  tokenCount?: number;
}

export interface PolicyLossResult {
  /** L_RL = pg_loss + beta * kl_loss. */
  loss: number;
  /** `actor/pg_loss`: token-mean of the clipped loss. */
  pgLoss: number;
  /** Token-mean of k3 (0 when beta = 0). */
  klLoss: number;
  /** `actor/pg_clipfrac`: share of the given tokens whose clipped term won. */
  pgClipfrac: number;
  /** `actor/ppo_kl`: mean over the given tokens of old - new log-prob. */
  ppoKl: number;
  /** dL/dnll per token (nll = -log-prob): the per-token weight for the model's cross-entropy. */
  dLossDNll: Float64Array;
}

/** Token-mean GRPO loss over all response tokens, with the weights that apply its gradient. */
export function policyLoss(
  input: PolicyLossInput,
  { eps_low, eps_high, beta }: ClipParams,
): PolicyLossResult {
  const { logProbs, oldLogProbs, advantages, refLogProbs } = input;
  const n = logProbs.length;
  if (oldLogProbs.length !== n || advantages.length !== n)
    throw new Error('policyLoss: arrays differ in length');
  if (beta !== 0 && (refLogProbs === undefined || refLogProbs.length !== n)) {
    throw new Error('policyLoss: beta > 0 needs refLogProbs for every token');
  }
  const N = input.tokenCount ?? n;
  const dLossDNll = new Float64Array(n);
  let pg = 0;
  let kl = 0;
  let clipped = 0;
  let ppoKl = 0;
  for (let i = 0; i < n; i++) {
    const tok = clippedTokenLoss(logProbs[i], oldLogProbs[i], advantages[i], eps_low, eps_high);
    pg += tok.loss;
    if (tok.clipped) clipped++;
    ppoKl += oldLogProbs[i] - logProbs[i];
    let dLogProb = tok.dLogProb;
    if (beta !== 0 && refLogProbs !== undefined) {
      const k = k3(logProbs[i], refLogProbs[i]);
      kl += k.value;
      dLogProb += beta * k.dLogProb;
    }
    dLossDNll[i] = N > 0 ? -dLogProb / N : 0;
  }
  const pgLoss = N > 0 ? pg / N : 0;
  const klLoss = N > 0 ? kl / N : 0;
  return {
    loss: pgLoss + beta * klLoss,
    pgLoss,
    klLoss,
    pgClipfrac: n > 0 ? clipped / n : 0,
    ppoKl: n > 0 ? ppoKl / n : 0,
    dLossDNll,
  };
}

export interface DynamicSamplingResult<T> {
  /** The groups kept, original order first, then replacements; fewer than given if draws ran out. */
  groups: T[];
  /** Zero-variance groups dropped from the input. */
  dropped: number;
  /** Of those, how many were replaced by a fresh group with signal. */
  replaced: number;
  /** Replacement groups drawn (including zero-variance ones that were discarded in turn). */
  draws: number;
}

/**
 * DAPO's dynamic sampling: zero-variance groups add no gradient but still dilute the token-mean,
 * so drop them and draw fresh groups (new positions, G rollouts each) until the batch is full
 * again or `maxDraws` draws have been spent; `draw` returning undefined means no more are available.
 */
export async function dynamicSampling<T>(
  groups: readonly T[],
  rewardsOf: (group: T) => Nums,
  draw: () => T | undefined | Promise<T | undefined>,
  maxDraws = RMT_DEFAULTS.grpo.max_replacement_draws,
): Promise<DynamicSamplingResult<T>> {
  const kept = groups.filter((g) => !isZeroStd(rewardsOf(g)));
  const dropped = groups.length - kept.length;
  let replaced = 0;
  let draws = 0;
  while (replaced < dropped && draws < maxDraws) {
    const fresh = await draw();
    if (fresh === undefined) break;
    draws++;
    if (isZeroStd(rewardsOf(fresh))) continue;
    kept.push(fresh);
    replaced++;
  }
  return { groups: kept, dropped, replaced, draws };
}
