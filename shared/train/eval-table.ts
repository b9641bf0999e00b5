import type { EvalResult, SplitAccuracy } from '../run/evaluate.js';

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : 'n/a');

function row(cells: string[], widths: number[]): string {
  return cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [
    row(header, widths),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map((r) => row(r, widths)),
  ]
    .map((l) => `${l.trimEnd()}\n`)
    .join('');
}

/**
 * An evaluation as a person reads it: accuracy per split with its 95% interval and count, the
 * average, reasoning length and the share of rollouts without an answer; then what the model
 * answers most, so a model answering one token everywhere shows at a glance.
 */
export function formatEvalResult(r: EvalResult, title: string): string {
  const split = (name: string, s: SplitAccuracy) => [
    name,
    pct(s.mean),
    Number.isFinite(s.ci95) ? `±${(100 * s.ci95).toFixed(1)}` : 'n/a',
    String(s.n),
  ];
  let out = `${title}\n\n`;
  out += table(
    ['split', 'accuracy', '95% CI', 'n'],
    [
      split('easy', r.easy),
      split('medium', r.medium),
      split('hard', r.hard),
      ...(r.all ? [split('all', r.all)] : []),
      ['average', pct(r.avg), '', String(r.positions)],
    ],
  );
  if (r.mode === 'ntr') {
    out += `\nreasoning length ${r.reasoning_length.toFixed(1)} tokens, no answer ${pct(r.no_answer_rate)}\n`;
  }
  const top = (xs: [string, number][] | undefined) =>
    (xs ?? []).map(([text, n]) => `${JSON.stringify(text)} ${n}`).join(', ');
  if (r.top_predictions?.length) out += `most frequent answers: ${top(r.top_predictions)}\n`;
  if (r.top_targets?.length) out += `most frequent targets: ${top(r.top_targets)}\n`;
  return out;
}

/**
 * Evaluations side by side (the main job's base against its RMT model): accuracy over every
 * position with its 95% interval and count first, so whether two rows differ can be read off, then
 * the paper's nested splits, the reasoning length and the share without an answer.
 */
export function formatComparison(rows: { name: string; result: EvalResult }[]): string {
  const ci = (s: SplitAccuracy | undefined) =>
    s && Number.isFinite(s.ci95) ? `±${(100 * s.ci95).toFixed(1)}` : 'n/a';
  return table(
    [
      'model',
      'accuracy',
      '95% CI',
      'n',
      'easy',
      'medium',
      'hard',
      'average',
      'reasoning tokens',
      'no answer',
    ],
    rows.map(({ name, result: r }) => [
      name,
      r.all ? pct(r.all.mean) : 'n/a',
      ci(r.all),
      r.all ? String(r.all.n) : String(r.positions),
      pct(r.easy.mean),
      pct(r.medium.mean),
      pct(r.hard.mean),
      pct(r.avg),
      r.mode === 'ntr' ? r.reasoning_length.toFixed(1) : '-',
      r.mode === 'ntr' ? pct(r.no_answer_rate) : '-',
    ]),
  );
}
