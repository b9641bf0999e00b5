/**
 * Two models scored on the same positions: the difference of their accuracies with a paired 95%
 * interval and McNemar's exact test. Pairing matters: two accuracies of 0.32 and 0.40 on 300
 * positions have unpaired intervals of about ±5.4 each, which overlap, while the per-position
 * differences of the same two models usually vary far less than two independent samples would.
 */

export interface PairedDifference {
  /** Positions scored by both models. */
  n: number;
  /** mean(b) − mean(a), a fraction. */
  diff: number;
  /** Half-width of the 95% normal interval of the mean per-position difference. */
  ci95: number;
  /** Positions only a got right / only b got right (the discordant pairs). */
  onlyA: number;
  onlyB: number;
  /** Two-sided exact McNemar p-value: the discordant pairs against Binomial(onlyA + onlyB, 1/2). */
  p: number;
}

/** Per-position hits as written in an EvalResult: one character per position, `1` right, `0` wrong. */
export function parseHits(hits: string, field = 'hits'): boolean[] {
  if (!/^[01]*$/.test(hits)) throw new RangeError(`${field}: expected only 0 and 1, got another character`);
  return [...hits].map((c) => c === '1');
}

export function formatHits(hits: readonly boolean[]): string {
  return hits.map((h) => (h ? '1' : '0')).join('');
}

/** log C(n, k) through log-gamma-free summation (n is at most a few thousand positions). */
function logChoose(n: number, k: number): number {
  let s = 0;
  for (let i = 1; i <= k; i++) s += Math.log(n - k + i) - Math.log(i);
  return s;
}

/** P(X <= k) + P(X >= n − k) for X ~ Binomial(n, 1/2), k <= n / 2, capped at 1. */
function twoSidedBinomialHalf(n: number, k: number): number {
  if (n === 0) return 1;
  const lo = Math.min(k, n - k);
  let tail = 0;
  for (let i = 0; i <= lo; i++) tail += Math.exp(logChoose(n, i) - n * Math.LN2);
  return Math.min(1, 2 * tail);
}

export function pairedDifference(a: readonly boolean[], b: readonly boolean[]): PairedDifference {
  if (a.length !== b.length) {
    throw new RangeError(
      `paired difference: ${a.length} positions against ${b.length}; pairs need the same positions`,
    );
  }
  const n = a.length;
  let onlyA = 0;
  let onlyB = 0;
  for (let i = 0; i < n; i++) {
    if (a[i] && !b[i]) onlyA++;
    else if (b[i] && !a[i]) onlyB++;
  }
  if (n === 0) return { n, diff: Number.NaN, ci95: Number.NaN, onlyA, onlyB, p: 1 };
  const diff = (onlyB - onlyA) / n;
  // d_i in {-1, 0, 1}: sum of squares = discordant pairs; sample variance with divisor n − 1
  const variance = n > 1 ? ((onlyA + onlyB) / n - diff * diff) * (n / (n - 1)) : Number.NaN;
  const ci95 = 1.96 * Math.sqrt(Math.max(0, variance) / n);
  return { n, diff, ci95, onlyA, onlyB, p: twoSidedBinomialHalf(onlyA + onlyB, Math.min(onlyA, onlyB)) };
}

/** One line a person reads: `rmt − base: +8.0 points, 95% CI [+3.1, +12.9], McNemar p = 0.002 (...)`. */
export function formatPairedDifference(nameA: string, nameB: string, d: PairedDifference): string {
  const pts = (x: number) => `${x >= 0 ? '+' : '−'}${Math.abs(100 * x).toFixed(1)}`;
  const p = d.p < 0.001 ? d.p.toExponential(1) : d.p.toFixed(3);
  const verdict =
    d.diff - d.ci95 > 0
      ? `${nameB} is ahead`
      : d.diff + d.ci95 < 0
        ? `${nameA} is ahead`
        : 'no clear difference';
  return (
    `${nameB} − ${nameA}: ${pts(d.diff)} points, 95% CI [${pts(d.diff - d.ci95)}, ${pts(d.diff + d.ci95)}], ` +
    `McNemar p = ${p} (n = ${d.n} paired positions; right only by ${nameA} ${d.onlyA}, only by ${nameB} ${d.onlyB}): ${verdict}\n`
  );
}
