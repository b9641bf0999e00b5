/**
 * A training run's metrics as a Markdown table for a person: means over windows of 10 steps of the
 * budget, the lengths and the scores, then the first and last 20 steps as mean ± standard error over
 * steps, and the least-squares slope of `critic/score/mean` with its standard error.
 *
 * Usage: npx tsx scripts/window-table.ts runs/<run>/metrics.jsonl
 */
import { readFileSync } from 'node:fs';

const BASE_KEYS = [
  'budget/current',
  'response_length/mean',
  'response_length/reasoning_mean',
  'critic/score/mean',
  'critic/rewards/mean',
  'frac_reward_zero_std',
];
/** With dynamic sampling the score of the drawn positions (critic/score/mean is over kept groups). */
const DRAWN = 'critic/score/drawn_mean';

function stat(xs: number[]): { m: number; se: number } {
  const m = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / Math.max(1, xs.length - 1));
  return { m, se: sd / Math.sqrt(xs.length) };
}

export function windowTable(rows: Record<string, number>[]): string {
  const drawn = rows.some((r) => r[DRAWN] !== undefined);
  const KEYS = drawn ? [...BASE_KEYS.slice(0, 3), DRAWN, ...BASE_KEYS.slice(3)] : BASE_KEYS;
  const digits = (k: string) => (k.startsWith('critic') || k.startsWith('frac') ? 3 : 1);
  const line = (
    label: string,
    win: Record<string, number>[],
    f: (k: string, s: { m: number; se: number }) => string,
  ) => `| ${label} | ${KEYS.map((k) => f(k, stat(win.map((r) => r[k])))).join(' | ')} |`;
  const out = [
    `| steps | ${KEYS.map((k) => `\`${k}\``).join(' | ')} |`,
    `|---|${KEYS.map(() => '---').join('|')}|`,
  ];
  for (let i = 0; i < rows.length; i += 10) {
    const win = rows.slice(i, i + 10);
    out.push(line(`${win[0].step}-${win[win.length - 1].step}`, win, (k, s) => s.m.toFixed(digits(k))));
  }
  const n = Math.min(20, Math.floor(rows.length / 2));
  const pm = (k: string, s: { m: number; se: number }) =>
    `${s.m.toFixed(digits(k))} ± ${s.se.toFixed(digits(k))}`;
  out.push(line(`**first ${n}** (mean ± s.e.)`, rows.slice(0, n), pm));
  out.push(line(`**last ${n}** (mean ± s.e.)`, rows.slice(-n), pm));
  for (const key of drawn ? [DRAWN, 'critic/score/mean'] : ['critic/score/mean']) {
    out.push('');
    out.push(slope(rows, key));
  }
  return out.join('\n');
}

/** The least-squares slope of `key` over steps, with its standard error, per 100 steps. */
function slope(rows: Record<string, number>[], key: string): string {
  const xs = rows.map((r) => r.step);
  const ys = rows.map((r) => r[key]);
  const mx = stat(xs).m;
  const my = stat(ys).m;
  const sxx = xs.reduce((s, x) => s + (x - mx) ** 2, 0);
  const b = xs.reduce((s, x, i) => s + (x - mx) * (ys[i] - my), 0) / sxx;
  const res = ys.reduce((s, y, i) => s + (y - my - b * (xs[i] - mx)) ** 2, 0);
  const se = Math.sqrt(res / (xs.length - 2) / sxx);
  return `Least-squares slope of \`${key}\` over steps: ${(100 * b).toFixed(3)} ± ${(100 * se).toFixed(3)} (s.e.) per 100 steps.`;
}

if (process.argv[1]?.endsWith('window-table.ts')) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: npx tsx scripts/window-table.ts runs/<run>/metrics.jsonl');
    process.exit(2);
  }
  const rows = readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, number>)
    .filter((r) => r['critic/score/mean'] !== undefined);
  console.log(windowTable(rows));
}
