/**
 * Entropy and mutual information of discrete samples, in bits: what the benchmark uses to show that a
 * stated budget tells nothing about the target. The plug-in estimate of mutual information is biased
 * upwards (about (|X| - 1)(|Y| - 1) / (2 N ln 2) bits for independent variables), which at a few
 * thousand samples and dozens of budget values is as large as the threshold being checked; the
 * Miller-Madow correction adds (m - 1) / (2 N) nats to each plug-in entropy (m the number of values
 * seen), which removes that first-order bias.
 */
export type EntropyEstimator = 'plug-in' | 'miller-madow';

function counts<T>(xs: Iterable<T>): Map<T, number> {
  const c = new Map<T, number>();
  for (const x of xs) c.set(x, (c.get(x) ?? 0) + 1);
  return c;
}

/** Entropy in bits of the empirical distribution of `xs` (Miller-Madow corrected by default). */
export function entropyBits<T>(xs: readonly T[], estimator: EntropyEstimator = 'miller-madow'): number {
  const n = xs.length;
  if (n === 0) return Number.NaN;
  const c = counts(xs);
  let h = 0;
  for (const k of c.values()) h -= (k / n) * Math.log(k / n);
  if (estimator === 'miller-madow') h += (c.size - 1) / (2 * n);
  return h / Math.LN2;
}

export interface MutualInformation {
  /** I(X; Y) in bits with the chosen estimator (can come out slightly below 0 when it is near 0). */
  bits: number;
  /** The plug-in estimate, for comparison. */
  plug_in_bits: number;
  /** H(Y) in bits (the same estimator): the most I(X; Y) could be. */
  target_entropy_bits: number;
  samples: number;
  estimator: EntropyEstimator;
}

/** I(X; Y) = H(X) + H(Y) - H(X, Y) over paired samples. */
export function mutualInformation(
  pairs: readonly (readonly [string | number, string | number])[],
  estimator: EntropyEstimator = 'miller-madow',
): MutualInformation {
  const xs = pairs.map((p) => p[0]);
  const ys = pairs.map((p) => p[1]);
  const joint = pairs.map((p) => `${p[0]}\u0000${p[1]}`);
  const mi = (e: EntropyEstimator) => entropyBits(xs, e) + entropyBits(ys, e) - entropyBits(joint, e);
  return {
    bits: mi(estimator),
    plug_in_bits: mi('plug-in'),
    target_entropy_bits: entropyBits(ys, estimator),
    samples: pairs.length,
    estimator,
  };
}

/** The share of the most frequent value (0 for no values), with the value. */
export function topShare<T>(xs: readonly T[]): { value: T | null; share: number; n: number } {
  if (xs.length === 0) return { value: null, share: 0, n: 0 };
  let best: T | null = null;
  let most = 0;
  for (const [v, k] of counts(xs)) {
    if (k > most) {
      most = k;
      best = v;
    }
  }
  return { value: best, share: most / xs.length, n: xs.length };
}
