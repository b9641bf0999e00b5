import test from 'ava';
import {
  formatHits,
  formatPairedDifference,
  pairedDifference,
  parseHits,
} from '../shared/run/paired-difference.js';
import { Rng } from '../shared/util/rng.js';

/** Exact two-sided McNemar p by brute force over every outcome of Binomial(m, 1/2), in float64. */
function bruteMcNemar(onlyA: number, onlyB: number): number {
  const m = onlyA + onlyB;
  const k = Math.min(onlyA, onlyB);
  const pmf = (i: number) => {
    let c = 1;
    for (let j = 1; j <= i; j++) c = (c * (m - i + j)) / j;
    return c / 2 ** m;
  };
  let p = 0;
  for (let i = 0; i <= m; i++) if (Math.min(i, m - i) <= k) p += pmf(i);
  return Math.min(1, p);
}

test('pairedDifference: the mean per-position difference, its interval and the exact McNemar p', (t) => {
  const rng = new Rng(7);
  for (let trial = 0; trial < 20; trial++) {
    const n = 20 + Math.floor(rng.next() * 200);
    const a = Array.from({ length: n }, () => rng.next() < 0.4);
    const b = a.map((x) => (rng.next() < 0.2 ? !x : x) || rng.next() < 0.1);
    const d = pairedDifference(a, b);
    const diffs = a.map((x, i) => Number(b[i]) - Number(x));
    const mean = diffs.reduce((s, x) => s + x, 0) / n;
    const sd = Math.sqrt(diffs.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1));
    t.true(Math.abs(d.diff - mean) < 1e-12);
    t.true(Math.abs(d.ci95 - (1.96 * sd) / Math.sqrt(n)) < 1e-12, `ci95 ${d.ci95}`);
    t.is(d.onlyA, diffs.filter((x) => x < 0).length);
    t.is(d.onlyB, diffs.filter((x) => x > 0).length);
    // brute force is exact for these sizes; 1e-9 absorbs the log-space summation's rounding
    t.true(Math.abs(d.p - bruteMcNemar(d.onlyA, d.onlyB)) < 1e-9, `p ${d.p}`);
  }
});

test('pairedDifference: known cases, and unequal lengths refused', (t) => {
  // 10 discordant, all for b: p = 2 / 2^10
  const a = [...Array(10).fill(false), ...Array(5).fill(true)];
  const b = [...Array(10).fill(true), ...Array(5).fill(true)];
  const d = pairedDifference(a, b);
  t.is(d.diff, 10 / 15);
  t.true(Math.abs(d.p - 2 / 1024) < 1e-15);
  t.regex(
    formatPairedDifference('base', 'rmt', d),
    /^rmt − base: \+66\.7 points, .*McNemar p = 0\.002 .*rmt is ahead$/m,
  );
  t.is(pairedDifference([true], [true]).p, 1);
  t.throws(() => pairedDifference([true], [true, false]), { message: /1 positions against 2/ });
});

test('hits round-trip through their string form; another character is refused naming the field', (t) => {
  const h = [true, false, false, true];
  t.is(formatHits(h), '1001');
  t.deepEqual(parseHits('1001'), h);
  t.throws(() => parseHits('10x1', 'rows[1].result.hits'), { message: /^rows\[1\]\.result\.hits: / });
});
