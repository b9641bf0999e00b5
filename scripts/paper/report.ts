/**
 * The paper table from the benchmark's finished stages: rows aggregated over seeds (mean and 95%
 * t-interval), the post-training check, the issue's targets with met / not met, the plots, and
 * paper-table.json / paper-table.md.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readMetrics } from '../../shared/obs/metrics-log.js';
import type { MatchRule } from '../../shared/rl/rewards.js';
import type { EvalResult } from '../../shared/run/evaluate.js';
import { lineChartSvg, type Series } from '../../shared/util/plot.js';
import { layout, type PaperSettings, type Start, type TrainedMethod } from './settings.js';
import { type MeanCi, meanCi } from './stats.js';

export const SCHEMA = 'rmt-paper-table/1';

/** One seed's evaluation of a row (accuracies are fractions in [0, 1]; null: empty split). */
export interface SeedEval {
  seed: number;
  easy: number | null;
  medium: number | null;
  hard: number | null;
  avg: number | null;
  reasoning_length: number;
  no_answer_rate: number;
  positions: number;
  split_sizes: { easy: number; medium: number; hard: number };
}

export interface Row {
  /** Unique within the table: `ntp` and `ntr` are the base model, `ntp-trained` the NTP run. */
  id: string;
  /** The spec's name of the method (section 6). */
  method: string;
  /** The checkpoint evaluated: `base` or the trained method. */
  model: string;
  /** `ntp`: argmax next token; `ntr`: next-token reasoning (greedy). */
  mode: 'ntp' | 'ntr';
  easy: MeanCi;
  medium: MeanCi;
  hard: MeanCi;
  avg: MeanCi;
  /** Mean reasoning tokens per position, mean over seeds (0 for ntp). */
  reasoning_length: number | null;
  reasoning_length_ci95: number | null;
  /** Which post-training run belongs to this row's checkpoint (null: none). */
  post_training_start: Start | null;
  /** The condition the top-level easy / medium / hard / avg, reasoning length and seeds are from. */
  eval_condition: string;
  /** The row under every condition it was evaluated in (key: `<prompt>.<rule>`, see CONDITIONS). */
  eval_conditions: Record<string, ConditionResult>;
  /** Average accuracy on the post-training held-out positions before / after the same GRPO run. */
  before: MeanCi | null;
  after: MeanCi | null;
  seeds: SeedEval[];
}

/**
 * The evaluation conditions: which budget the prompt states and which rule scores the prediction.
 * `no_budget`: none stated (RPT's prompt); `same_budget`: one budget B_T for every row (RMT's final
 * one); `own_prompt`: the row's method's own prompt at t = T (what the older tables reported);
 * `argmax`: the NTP rows, no reasoning. Rules: `token` (the exact next token) and `byte_prefix`
 * (RPT's reward).
 */
export const CONDITION_PROMPTS = ['same_budget', 'no_budget', 'own_prompt', 'argmax'] as const;
export type ConditionPrompt = (typeof CONDITION_PROMPTS)[number];
export const conditionKey = (prompt: ConditionPrompt, rule: MatchRule) =>
  `${prompt}.${rule === 'token' ? 'token' : 'byte_prefix'}`;

export interface ConditionResult {
  /** The budget stated (null: none). */
  budget: number | null;
  match: MatchRule;
  easy: MeanCi;
  medium: MeanCi;
  hard: MeanCi;
  avg: MeanCi;
  reasoning_length: number | null;
  reasoning_length_ci95: number | null;
  seeds: SeedEval[];
}

export interface PostTrainingResult {
  start: Start;
  checkpoint: string;
  before: Record<'easy' | 'medium' | 'hard' | 'avg', MeanCi> & { reasoning_length: MeanCi };
  after: Record<'easy' | 'medium' | 'hard' | 'avg', MeanCi> & { reasoning_length: MeanCi };
  seeds: { seed: number; before: SeedEval; after: SeedEval }[];
}

export interface Target {
  id: string;
  description: string;
  threshold: number;
  /** The measured ratio (or the ablation's gap to RMT); null when a row is missing or undefined. */
  value: number | null;
  met: boolean | null;
}

/**
 * One seed's evaluation as the table keeps it; `rule` picks the scoring rule from the result's
 * `by_match` (default: the rule its splits were scored by). An older result without `by_match`
 * has token-match splits only: other rules come out null.
 */
export const seedEval = (seed: number, e: EvalResult, rule?: MatchRule): SeedEval => {
  const f = (x: number | undefined) => (x !== undefined && Number.isFinite(x) ? x : null);
  const own = e.match ?? 'token';
  const by = rule === undefined || rule === own ? null : e.by_match?.[rule];
  const missing = rule !== undefined && rule !== own && !by;
  return {
    seed,
    easy: missing ? null : f(by ? by.easy : e.easy.mean),
    medium: missing ? null : f(by ? by.medium : e.medium.mean),
    hard: missing ? null : f(by ? by.hard : e.hard.mean),
    avg: missing ? null : f(by ? by.avg : e.avg),
    reasoning_length: e.reasoning_length,
    no_answer_rate: e.no_answer_rate,
    positions: e.positions,
    split_sizes: { easy: e.easy.n, medium: e.medium.n, hard: e.hard.n },
  };
};

const aggregate = (evals: SeedEval[]) => ({
  easy: meanCi(evals.map((e) => e.easy)),
  medium: meanCi(evals.map((e) => e.medium)),
  hard: meanCi(evals.map((e) => e.hard)),
  avg: meanCi(evals.map((e) => e.avg)),
  reasoning_length: meanCi(evals.map((e) => e.reasoning_length)),
});

/** Where a row's per-seed evaluations and its post-training come from. */
export interface RowSource {
  id: string;
  method: string;
  model: string;
  mode: 'ntp' | 'ntr';
  /** Per condition key: the budget stated, the rule, and each seed's evaluation. */
  conditions: Record<string, { budget: number | null; match: MatchRule; evals: SeedEval[] }>;
  /** The condition the row's top-level numbers are from. */
  headline: string;
  postStart: Start | null;
}

export function buildRows(sources: RowSource[], post: PostTrainingResult[]): Row[] {
  return sources.map((s) => {
    const head = s.conditions[s.headline];
    if (!head) throw new Error(`row ${s.id}: no evaluation under ${s.headline}`);
    const a = aggregate(head.evals);
    const p = post.find((x) => x.start === s.postStart) ?? null;
    const conditions = Object.fromEntries(
      Object.entries(s.conditions).map(([k, c]) => {
        const x = aggregate(c.evals);
        return [
          k,
          {
            budget: c.budget,
            match: c.match,
            easy: x.easy,
            medium: x.medium,
            hard: x.hard,
            avg: x.avg,
            reasoning_length: x.reasoning_length.mean,
            reasoning_length_ci95: x.reasoning_length.ci95,
            seeds: c.evals,
          } satisfies ConditionResult,
        ];
      }),
    );
    return {
      id: s.id,
      method: s.method,
      model: s.model,
      mode: s.mode,
      easy: a.easy,
      medium: a.medium,
      hard: a.hard,
      avg: a.avg,
      reasoning_length: a.reasoning_length.mean,
      reasoning_length_ci95: a.reasoning_length.ci95,
      post_training_start: p ? p.start : null,
      eval_condition: s.headline,
      eval_conditions: conditions,
      before: p ? p.before.avg : null,
      after: p ? p.after.avg : null,
      seeds: head.evals,
    };
  });
}

export function buildPost(
  start: Start,
  checkpoint: string,
  seeds: { seed: number; before: SeedEval; after: SeedEval }[],
): PostTrainingResult {
  return {
    start,
    checkpoint,
    before: aggregate(seeds.map((s) => s.before)),
    after: aggregate(seeds.map((s) => s.after)),
    seeds,
  };
}

const ratio = (a: number | null | undefined, b: number | null | undefined) =>
  a === null || a === undefined || b === null || b === undefined || b === 0 ? null : a / b;

export function targets(s: PaperSettings, rows: Row[], post: PostTrainingResult[]): Target[] {
  const row = (id: string) => rows.find((r) => r.id === id);
  const out: Target[] = [];
  const rmt = row('rmt');
  const rpt = row('rpt');
  const acc = ratio(rmt?.avg.mean, rpt?.avg.mean);
  out.push({
    id: 'rmt_over_rpt_avg',
    description: 'RMT average accuracy / RPT average accuracy >= threshold',
    threshold: s.targets.rmt_over_rpt_avg,
    value: acc,
    met: acc === null ? null : acc >= s.targets.rmt_over_rpt_avg,
  });
  const len = ratio(rmt?.reasoning_length, rpt?.reasoning_length);
  out.push({
    id: 'rmt_over_rpt_reasoning_length',
    description: 'RMT mean reasoning length / RPT mean reasoning length <= threshold',
    threshold: s.targets.rmt_over_rpt_reasoning_length,
    value: len,
    met: len === null ? null : len <= s.targets.rmt_over_rpt_reasoning_length,
  });
  for (const id of ['rmt-no-dtb', 'rmt-no-cas', 'rmt-no-ntp']) {
    const r = row(id);
    if (!r) continue;
    const gap =
      rmt?.avg.mean === null || rmt === undefined || r.avg.mean === null ? null : rmt.avg.mean - r.avg.mean;
    out.push({
      id: `${id}_below_rmt`,
      description: `${id} average accuracy below RMT's (value: RMT minus ${id}, > 0 meets it)`,
      threshold: 0,
      value: gap,
      met: gap === null ? null : gap > 0,
    });
  }
  const after = (start: Start) => post.find((p) => p.start === start)?.after.avg.mean;
  const pt = ratio(after('rmt'), after('base'));
  out.push({
    id: 'post_training_rmt_over_base',
    description:
      'after the same post-training: accuracy from the RMT start / from the base start >= threshold',
    threshold: s.targets.post_training_rmt_over_base,
    value: pt,
    met: pt === null ? null : pt >= s.targets.post_training_rmt_over_base,
  });
  return out;
}

/** The mean over seeds of a metric at each step (steps where at least one seed logged it). */
function stepMeans(runs: Record<string, number>[][], key: string): [number, number][] {
  const by = new Map<number, number[]>();
  for (const rows of runs) {
    for (const r of rows) {
      const v = r[key];
      if (typeof v !== 'number' || !Number.isFinite(v)) continue;
      const list = by.get(r.step) ?? [];
      list.push(v);
      by.set(r.step, list);
    }
  }
  return [...by.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([step, vs]) => [step, vs.reduce((a, b) => a + b, 0) / vs.length]);
}

/**
 * The plots: accuracy and reasoning length against step for the plotted rows (mean over seeds;
 * evaluations every `eval.every` steps plus the final one), and the budget and tier mix against
 * step. Returns the files written, relative to `dir`'s parent.
 */
export function writePlots(
  s: PaperSettings,
  out: string,
  dir: string,
  totalSteps: Record<string, number>,
  baseRows: Row[],
): Record<string, string> {
  mkdirSync(dir, { recursive: true });
  const L = layout(out);
  const metrics = (m: TrainedMethod) =>
    s.seeds.map((seed) => {
      const run = L.run(seed, m);
      const rows = existsSync(join(run, 'metrics.jsonl')) ? readMetrics(join(run, 'metrics.jsonl')) : [];
      // The final evaluation is in eval.json, not in metrics.jsonl: add it at step T.
      if (existsSync(join(run, 'eval.json'))) {
        const e = JSON.parse(readFileSync(join(run, 'eval.json'), 'utf8')) as EvalResult;
        rows.push({
          step: totalSteps[m],
          'eval/avg': e.avg,
          'eval/hard': e.hard.mean,
          'eval/reasoning_length': e.reasoning_length,
        });
      }
      return rows;
    });
  const byMethod = Object.fromEntries(s.methods.rows.map((m) => [m, metrics(m)]));
  const files: Record<string, string> = {};
  const write = (name: string, svg: string) => {
    writeFileSync(join(dir, name), svg);
    files[name.replace(/\.svg$/, '')] = name;
  };
  const baseLines: Series[] = baseRows
    .filter((r) => r.avg.mean !== null)
    .map((r) => ({ name: `base ${r.mode.toUpperCase()} (avg)`, points: [], y: r.avg.mean as number }));
  write(
    'accuracy.svg',
    lineChartSvg({
      title: `held-out next-token accuracy (mean over ${s.seeds.length} seeds)`,
      xLabel: 'step',
      yLabel: 'accuracy (0-1)',
      series: [
        ...s.plots.methods.flatMap((m) => [
          { name: `${m} avg`, points: stepMeans(byMethod[m], 'eval/avg') },
          { name: `${m} hard`, points: stepMeans(byMethod[m], 'eval/hard') },
        ]),
        ...baseLines,
      ],
    }),
  );
  write(
    'reasoning-length.svg',
    lineChartSvg({
      title: `reasoning length (mean over ${s.seeds.length} seeds)`,
      xLabel: 'step',
      yLabel: 'tokens',
      series: s.plots.methods.flatMap((m) => [
        { name: `${m} rollouts`, points: stepMeans(byMethod[m], 'response_length/reasoning_mean') },
        { name: `${m} eval`, points: stepMeans(byMethod[m], 'eval/reasoning_length') },
      ]),
    }),
  );
  write(
    'budget.svg',
    lineChartSvg({
      title: 'reasoning budget B_t stated / enforced',
      xLabel: 'step',
      yLabel: 'tokens',
      series: s.plots.methods.map((m) => ({
        name: `${m} budget/current`,
        points: stepMeans(byMethod[m], 'budget/current'),
      })),
    }),
  );
  const cas = s.plots.methods.filter((m) => stepMeans(byMethod[m], 'curriculum/p_easy').length > 0);
  write(
    'tier-mix.svg',
    lineChartSvg({
      title: 'curriculum tier mix p_t (CAS)',
      xLabel: 'step',
      yLabel: 'probability',
      series: cas.flatMap((m) =>
        (['easy', 'medium', 'hard'] as const).map((tier) => ({
          name: `${m} p_${tier}`,
          points: stepMeans(byMethod[m], `curriculum/p_${tier}`),
        })),
      ),
    }),
  );
  return files;
}

const pct = (x: number | null) => (x === null ? 'n/a' : (100 * x).toFixed(1));
const cell = (m: MeanCi | null) =>
  m === null || m.mean === null ? 'n/a' : m.ci95 === null ? pct(m.mean) : `${pct(m.mean)} ± ${pct(m.ci95)}`;

export interface ReportMeta {
  generated_at: string;
  commit: string;
  machine: Record<string, unknown>;
  wall_s: number;
  wall_s_by_kind: Record<string, number>;
  settings_file: string;
  out_dir: string;
  /** The setting's seeds when the table covers fewer (`--partial`). */
  seeds_planned?: number[];
}

export function markdown(
  s: PaperSettings,
  meta: ReportMeta,
  rows: Row[],
  post: PostTrainingResult[],
  tgts: Target[],
  plots: Record<string, string>,
  plotDir: string,
  confounds?: Record<string, unknown>,
): string {
  const m = meta.machine;
  const hours = (x: number) =>
    x >= 3600 ? `${(x / 3600).toFixed(2)} h` : x >= 120 ? `${(x / 60).toFixed(1)} min` : `${x.toFixed(1)} s`;
  const lines: string[] = [
    `# Paper table: setting \`${s.name}\``,
    '',
    s.description.trim(),
    '',
    ...(meta.seeds_planned && meta.seeds_planned.length > s.seeds.length
      ? [
          `**Partial: ${s.seeds.length} of the ${meta.seeds_planned.length} planned seeds** (seeds ` +
            `${meta.seeds_planned.filter((x) => !s.seeds.includes(x)).join(', ')} not run yet; written with ` +
            '`--partial`). Every figure below is over the seeds listed.',
          '',
        ]
      : []),
    `Made by \`npm run bench:paper -- --setting ${s.name}\` (settings \`${meta.settings_file}\`) at commit ` +
      `\`${meta.commit}\`, ${meta.generated_at}, on ${m.cpu} (${m.cores} cores, ${m.memory_gib} GiB, ` +
      `${m.os}, Node ${m.node}, backend ${m.backend}). Wall time of all stages: ${hours(meta.wall_s)} ` +
      `(${Object.entries(meta.wall_s_by_kind)
        .map(([k, v]) => `${k} ${hours(v)}`)
        .join(', ')}).`,
    '',
    `Next-token accuracy (%) on held-out positions split by the base model's entropy into RPT's nested ` +
      `easy / medium / hard sets, their average, and the mean reasoning length (tokens), each as the mean ` +
      `over ${s.seeds.length} seeds (${s.seeds.join(', ')}) ± the half-width of the 95% Student-t interval ` +
      `over seeds (t(0.975, n-1)·s/√n). Post-training: average accuracy on held-out word-problem answer ` +
      `digits before → after the same GRPO run from the row's checkpoint.`,
    '',
    '| row | method | model, mode | easy | medium | hard | average | reasoning tokens | post-training before → after |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const len =
      r.reasoning_length === null
        ? 'n/a'
        : `${r.reasoning_length.toFixed(1)}${r.reasoning_length_ci95 === null ? '' : ` ± ${r.reasoning_length_ci95.toFixed(1)}`}`;
    const pt =
      r.before && r.after ? `${cell(r.before)} → ${cell(r.after)} (from ${r.post_training_start})` : '-';
    lines.push(
      `| ${r.id} | ${r.method} | ${r.model}, ${r.mode} | ${cell(r.easy)} | ${cell(r.medium)} | ${cell(r.hard)} | ` +
        `**${cell(r.avg)}** | ${len} | ${pt} |`,
    );
  }
  const headline = rows.find((r) => r.mode === 'ntr');
  const bT = headline?.eval_conditions[conditionKey('same_budget', 'token')]?.budget;
  lines.push(
    '',
    `The table above is read under one condition for every NTR row: the same stated budget B_T = ${bT ?? 'n/a'} ` +
      'and the exact next token (NTP rows: argmax). The targets are read on it.',
    '',
    '## Every evaluation condition (average accuracy, %)',
    '',
    "Each NTR row with the same budget B_T stated, with no budget stated, and under its own method's prompt " +
      "(what the older tables reported), each scored by the exact next token and by RPT's byte-prefix rule; " +
      'reasoning tokens in brackets. NTP rows (argmax, no budget) are in the first two columns.',
    '',
    '| row | B_T, token | B_T, byte prefix | no budget, token | no budget, byte prefix | own prompt, token | own prompt, byte prefix |',
    '|---|---|---|---|---|---|---|',
  );
  for (const r of rows) {
    const c = (prompt: ConditionPrompt, rule: MatchRule) => {
      // NTP rows state no budget: their argmax sits in the first two columns only.
      if (r.mode === 'ntp' && prompt !== 'same_budget') return '-';
      const x = r.eval_conditions[conditionKey(r.mode === 'ntp' ? 'argmax' : prompt, rule)];
      if (!x) return 'n/a';
      const len =
        r.mode === 'ntr' && x.reasoning_length !== null ? ` (${x.reasoning_length.toFixed(1)})` : '';
      return `${cell(x.avg)}${len}`;
    };
    lines.push(
      `| ${r.id} | ${c('same_budget', 'token')} | ${c('same_budget', 'byte-prefix')} | ${c('no_budget', 'token')} | ` +
        `${c('no_budget', 'byte-prefix')} | ${c('own_prompt', 'token')} | ${c('own_prompt', 'byte-prefix')} |`,
    );
  }
  if (confounds) {
    const num = (x: unknown, d = 3) => (typeof x === 'number' ? x.toFixed(d) : 'n/a');
    const share = (x: unknown) => {
      const o = (x ?? {}) as Record<string, unknown>;
      return ['easy', 'medium', 'hard'].map((t) => `${t} ${num(o[t], 2)}`).join(', ');
    };
    lines.push(
      '',
      '## Confounds',
      '',
      `- Stated budget vs target in the base's pre-training corpus: I(budget; digit after \`</think>\`) = ` +
        `${num(confounds.budget_target_mi_bits, 4)} bits (leading digit of the answer: ` +
        `${num(confounds.budget_leading_digit_mi_bits, 4)} bits; Miller-Madow; aim below 0.02).`,
      `- Share of the most frequent target per curriculum training tier (largest over seeds): ` +
        `${share(confounds.top_target_share)} (aim: none above 0.3); per held-out evaluation split: ` +
        `${share(confounds.top_target_share_eval)}.`,
    );
  }
  lines.push('', '## Targets', '', '| target | threshold | measured | met |', '|---|---|---|---|');
  for (const t of tgts) {
    const v = t.value === null ? 'n/a' : t.value.toFixed(3);
    const met = t.met === null ? 'not measurable' : t.met ? 'met' : '**not met**';
    lines.push(`| ${t.description} | ${t.threshold} | ${v} | ${met} |`);
  }
  const missed = tgts.filter((t) => t.met !== true);
  lines.push(
    '',
    missed.length === 0
      ? 'Every target is met (on the means; see the intervals above for how clearly).'
      : `Not met in this run (${missed.length} of ${tgts.length}): ${missed.map((t) => `\`${t.id}\``).join(', ')}.`,
  );
  if (post.length > 0) {
    lines.push(
      '',
      '## Post-training check',
      '',
      '| start | before: easy | medium | hard | average | after: easy | medium | hard | average |',
      '|---|---|---|---|---|---|---|---|---|',
    );
    for (const p of post) {
      const b = p.before;
      const a = p.after;
      lines.push(
        `| ${p.start} | ${cell(b.easy)} | ${cell(b.medium)} | ${cell(b.hard)} | **${cell(b.avg)}** | ` +
          `${cell(a.easy)} | ${cell(a.medium)} | ${cell(a.hard)} | **${cell(a.avg)}** |`,
      );
    }
  }
  lines.push(
    '',
    '## Per seed (average accuracy, %)',
    '',
    `| row | ${s.seeds.map((x) => `seed ${x}`).join(' | ')} |`,
  );
  lines.push(`|---|${s.seeds.map(() => '---').join('|')}|`);
  for (const r of rows) {
    lines.push(
      `| ${r.id} | ${s.seeds.map((x) => pct(r.seeds.find((e) => e.seed === x)?.avg ?? null)).join(' | ')} |`,
    );
  }
  const positions = rows[0]?.seeds.map(
    (e) =>
      `${e.positions} (seed ${e.seed}: ${e.split_sizes.easy}/${e.split_sizes.medium}/${e.split_sizes.hard} easy/medium/hard)`,
  );
  if (positions?.length) lines.push('', `Held-out positions per evaluation: ${positions.join('; ')}.`);
  lines.push('', '## Plots', '');
  const captions: Record<string, string> = {
    accuracy: 'held-out accuracy against step (average and hard split)',
    'reasoning-length': 'reasoning length against step (training rollouts and evaluations)',
    budget: 'budget B_t against step',
    'tier-mix': 'curriculum tier mix p_t against step',
  };
  for (const [k, f] of Object.entries(plots)) lines.push(`- [${captions[k] ?? k}](${plotDir}/${f})`);
  lines.push(
    '',
    `Every run's resolved config is \`config.resolved.json\` in its folder under \`${meta.out_dir}\`; the ` +
      'settings and the configs they derive from are in paper-table.json.',
    '',
  );
  return lines.join('\n');
}
