/**
 * The tier-mix schedule of CAS (docs/method.md section 4): easy-heavy while the policy learns the format,
 * a linear hand-over, then hard-heavy. Step-based only, so a resumed run gets the same mix.
 */
import type { TierMixParams, TierProbs } from '../config/rmt-defaults.js';

/** p_t: p1 for t < t1 = t1_frac T, linear from p1 to p2 on [t1, t2], p2 for t > t2 = t2_frac T. */
export function tierMix(t: number, T: number, { p1, p2, t1_frac, t2_frac }: TierMixParams): TierProbs {
  if (!(T > 0)) throw new Error(`tierMix: total steps T must be > 0 (got ${T})`);
  if (!(0 <= t1_frac && t1_frac <= t2_frac && t2_frac <= 1)) {
    throw new Error(`tierMix: need 0 <= t1_frac <= t2_frac <= 1 (got ${t1_frac}, ${t2_frac})`);
  }
  const t1 = t1_frac * T;
  const t2 = t2_frac * T;
  if (t < t1) return [...p1];
  if (t >= t2) return [...p2];
  const a = (t - t1) / (t2 - t1);
  return [0, 1, 2].map((i) => (1 - a) * p1[i] + a * p2[i]) as TierProbs;
}
