/**
 * How much of `confounds.budget_target_mi_bits` is the estimator's bias: the mutual information
 * between stated budget and the text after `</think>` over the base's pre-training corpus, split by
 * the kind of reasoning example (answer digits; statement pieces), beside the same estimate with the
 * budgets shuffled among the examples (independent by construction), over several shuffles.
 *
 *   npx tsx scripts/paper/budget-mi-baseline.ts [--setting math-all] [--tokenizer <dir>] [--shuffles 20]
 *
 * Writes bench/results/paper/budget-mi-baseline.json and prints a Markdown table.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { generateMathDocuments, mathOptionsFromConfig } from '../../shared/data/synthetic-math.js';
import { loadTokenizer } from '../../shared/data/tokenizer.js';
import { Rng } from '../../shared/util/rng.js';
import { type MutualInformation, mutualInformation } from './information.js';
import { Derived, loadSettings } from './settings.js';

const { values } = parseArgs({
  options: {
    setting: { type: 'string', default: 'math-all' },
    tokenizer: { type: 'string' },
    shuffles: { type: 'string', default: '20' },
    out: { type: 'string', default: 'bench/results/paper/budget-mi-baseline.json' },
  },
});
const REPO = resolve(import.meta.dirname, '..', '..');
const settingsFile = join(REPO, 'configs', 'paper', `${values.setting}.yaml`);
const s = loadSettings(settingsFile);
const out = join(REPO, 'runs', `paper-${s.name}`);
const cfg = new Derived(s, out, settingsFile).pretrain();
// The tokenizer the base's corpus was cut with: statement examples sit only before one-token pieces.
const tok = await loadTokenizer(values.tokenizer ?? join(out, 'base', 'final'));
const isOneToken = (p: string) => tok.encode(p).length === 1;
const docs = generateMathDocuments(
  { ...mathOptionsFromConfig(cfg.data.math ?? {}), isOneToken, split: 'train' },
  cfg.run.seed,
);
const pairs: { all: [number, string][]; answer: [number, string][]; statement: [number, string][] } = {
  all: [],
  answer: [],
  statement: [],
};
for (const d of docs) {
  for (const p of d.problems) {
    const r = p.reasoning;
    if (!r) continue;
    pairs.all.push([r.budget, r.target]);
    (r.digit >= 0 ? pairs.answer : pairs.statement).push([r.budget, r.target]);
  }
}
const shuffles = Number(values.shuffles);
const rng = new Rng(20261203);
function shuffled(list: readonly [number, string][]): [number, string][] {
  const budgets = list.map((x) => x[0]);
  for (let i = budgets.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [budgets[i], budgets[j]] = [budgets[j], budgets[i]];
  }
  return list.map((x, i) => [budgets[i], x[1]]);
}
const rows: Record<string, { measured: MutualInformation; shuffled_bits: number[]; targets: number }> = {};
for (const [kind, list] of Object.entries(pairs)) {
  const base = Array.from({ length: shuffles }, () => mutualInformation(shuffled(list)).bits);
  rows[kind] = {
    measured: mutualInformation(list),
    shuffled_bits: base,
    targets: new Set(list.map((x) => x[1])).size,
  };
}
const result = {
  setting: s.name,
  seed: cfg.run.seed,
  shuffle_seed: 20261203,
  shuffles,
  note: 'bits: Miller-Madow; shuffled_bits: the same estimate with budgets permuted among the examples (true MI 0)',
  rows,
};
mkdirSync(join(REPO, values.out, '..'), { recursive: true });
writeFileSync(join(REPO, values.out), `${JSON.stringify(result, null, 2)}\n`);
const fmt = (x: number) => x.toFixed(4);
const lines = [
  '| reasoning examples | n | distinct targets | I(budget; target), bits | plug-in | shuffled budgets: mean (min-max) |',
  '|---|---|---|---|---|---|',
  ...Object.entries(rows).map(([k, r]) => {
    const sh = r.shuffled_bits;
    const mean = sh.reduce((a, b) => a + b, 0) / sh.length;
    return `| ${k} | ${r.measured.samples} | ${r.targets} | ${fmt(r.measured.bits)} | ${fmt(r.measured.plug_in_bits)} | ${fmt(mean)} (${fmt(Math.min(...sh))}-${fmt(Math.max(...sh))}) |`;
  }),
];
process.stdout.write(`${lines.join('\n')}\n`);
