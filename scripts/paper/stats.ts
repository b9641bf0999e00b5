/**
 * Statistics over seeds for the paper table: the mean and the half-width of the 95% Student-t
 * interval of the mean, t(0.975, n - 1) * s / sqrt(n) with s the sample standard deviation. The
 * seeds are the replicates; each seed's value is already an accuracy over its held-out positions.
 */
export interface MeanCi {
  /** Mean over the seeds that have a value (null when none has). */
  mean: number | null;
  /** Half-width of the 95% t-interval (null with fewer than 2 values). */
  ci95: number | null;
  /** Seeds the value is over. */
  n: number;
}

/** t(0.975, df) for df = 1..30. */
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131,
  2.12, 2.11, 2.101, 2.093, 2.086, 2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042,
];

/** The 0.975 quantile of Student's t with `df` degrees of freedom (table to 30, then Cornish-Fisher). */
export function t975(df: number): number {
  if (!(df >= 1)) return Number.NaN;
  if (df <= 30) return T975[Math.round(df) - 1];
  const z = 1.959964;
  return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2);
}

export function meanCi(values: readonly (number | null | undefined)[]): MeanCi {
  const xs = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  const n = xs.length;
  if (n === 0) return { mean: null, ci95: null, n };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, ci95: null, n };
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1));
  return { mean, ci95: (t975(n - 1) * sd) / Math.sqrt(n), n };
}
