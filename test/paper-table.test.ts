import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import test from 'ava';
import { parse } from 'yaml';
import { Derived, loadSettings } from '../scripts/paper/settings.js';
import { runPaperBenchmark } from '../scripts/paper-table.js';
import { readMetrics } from '../shared/obs/metrics-log.js';

/**
 * The paper benchmark's smoke setting end to end: interrupted mid-run, resumed by the real
 * command to a complete table, then run once more, which must find every stage done and train nothing.
 */
const repo = resolve(import.meta.dirname, '..');
const smoke = join(repo, 'configs', 'paper', 'smoke.yaml');
const root = mkdtempSync(join(tmpdir(), 'rmt-paper-'));
const out = join(root, 'run');
test.after.always(() => rmSync(root, { recursive: true, force: true }));

const run = promisify(execFile);
const command = (...args: string[]) =>
  run(process.execPath, ['--import', 'tsx', join(repo, 'scripts', 'paper-table.ts'), ...args], {
    cwd: repo,
    env: { ...process.env, CI: '1' },
    maxBuffer: 64 * 1024 * 1024,
  });

const settings = parse(readFileSync(smoke, 'utf8')) as {
  seeds: number[];
  methods: { rows: string[]; set: { train: { steps: number }; budget: { hard_cap: number } } };
};
const steps = settings.methods.set.train.steps;
const hardCap = settings.methods.set.budget.hard_cap;

/** Every summary.json under the out folder, with its modification time. */
function summaries(dir: string): Map<string, number> {
  const found = new Map<string, number>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name === 'summary.json') found.set(p, statSync(p).mtimeMs);
    }
  };
  walk(dir);
  return found;
}

test.serial('smoke: an interrupted run stops with a checkpoint', async (t) => {
  t.timeout(10 * 60_000);
  const stop = new AbortController();
  const lines: string[] = [];
  const r = await runPaperBenchmark({
    settingsFile: smoke,
    out,
    quiet: true,
    signal: stop.signal,
    say: (l) => lines.push(l),
    // Stop the first seed's RMT run after its second step.
    onStep: (stage, step) => {
      if (stage === `seed-${settings.seeds[0]}/rmt` && step === 2) stop.abort();
    },
  });
  t.true(r.stopped, lines.join('\n'));
  const rmt = join(out, `seed-${settings.seeds[0]}`, 'rmt');
  t.true(existsSync(join(rmt, 'checkpoints', 'step-0000002')), 'the stopped run left a checkpoint');
  t.false(existsSync(join(rmt, 'eval.json')), 'the stopped run is not finished');
  t.false(existsSync(r.json), 'no table before every stage is done');
});

test.serial(
  'smoke: --partial writes the table over the seeds that are done and names the missing ones',
  async (t) => {
    t.timeout(10 * 60_000);
    const rest = settings.seeds.slice(1);
    const partialDir = join(out, 'partial-results');
    const r = await runPaperBenchmark({
      settingsFile: smoke,
      out,
      results: partialDir,
      seeds: rest,
      partial: true,
      quiet: true,
      say: () => {},
    });
    t.false(r.stopped);
    const table = JSON.parse(readFileSync(r.json, 'utf8'));
    t.deepEqual(table.seeds, rest);
    t.deepEqual(table.seeds_planned, settings.seeds);
    for (const row of table.rows) t.is(row.avg.n ?? rest.length, rest.length);
    const md = readFileSync(r.md, 'utf8');
    t.true(
      md.includes(
        `**Partial: ${rest.length} of the ${settings.seeds.length} planned seeds** (seeds ${settings.seeds[0]} not run yet`,
      ),
      md.slice(0, 600),
    );
  },
);

test.serial(
  'smoke: two invocations with disjoint --seeds resume to a complete table, plots and targets',
  async (t) => {
    t.timeout(10 * 60_000);
    // One invocation per core, as on a developer machine: the first seed (whose RMT run was stopped)
    // in one, the others in the second, sharing the output folder and its ledger.
    const [first, rest] = await Promise.all([
      command('--setting', 'smoke', '--out', out, '--quiet', '--seeds', String(settings.seeds[0])),
      command('--setting', 'smoke', '--out', out, '--quiet', '--seeds', settings.seeds.slice(1).join(',')),
    ]);
    const stderr = first.stderr + rest.stderr;
    t.regex(
      first.stderr,
      /stages \(seeds \d+ of \d+\): [1-9]\d* done earlier/,
      'the stages done before the stop are skipped',
    );
    t.regex(stderr, /table .*paper-table\.md/, 'the invocation that finished last wrote the table');
    const ledger = JSON.parse(readFileSync(join(out, 'stages.json'), 'utf8')) as Record<
      string,
      { done: boolean }
    >;
    // Per seed: the base's two rows, each trained row, each NTR row (the base's and the trained
    // reasoning rows) under the two shared conditions, and the post-training stages.
    const ntrRows = 1 + settings.methods.rows.filter((m) => m !== 'ntp').length;
    t.is(
      Object.keys(ledger).length,
      1 + settings.seeds.length * (2 + settings.methods.rows.length + ntrRows + 6),
    );
    t.true(
      Object.values(ledger).every((e) => e.done),
      "both invocations' stages are in the ledger, done",
    );
    // The interrupted run was resumed, not restarted: each step logged once.
    const rmt = join(out, `seed-${settings.seeds[0]}`, 'rmt');
    t.deepEqual(
      readMetrics(join(rmt, 'metrics.jsonl')).map((r) => r.step),
      Array.from({ length: steps }, (_, i) => i + 1),
    );

    const results = join(out, 'results');
    const table = JSON.parse(readFileSync(join(results, 'paper-table.json'), 'utf8'));
    t.is(table.schema, 'rmt-paper-table/1');
    t.deepEqual(table.seeds, settings.seeds);
    t.true(settings.seeds.length >= 3, 'the table is over at least 3 seeds');
    const spec = ['ntp', 'ntr', 'rpt', 'rmt', 'rmt-no-dtb', 'rmt-no-cas', 'rmt-no-ntp'];
    const methods = new Set(table.rows.map((r: { method: string }) => r.method));
    for (const m of spec) t.true(methods.has(m), `a row for ${m}`);
    t.deepEqual(
      table.rows.map((r: { id: string }) => r.id),
      ['ntp', 'ntr', 'ntp-trained', 'rpt', 'rmt', 'rmt-no-dtb', 'rmt-no-cas', 'rmt-no-ntp'],
    );
    const inUnit = (x: unknown) => typeof x === 'number' && x >= 0 && x <= 1;
    // The confound figures and the shared evaluation condition.
    t.true(typeof table.confounds.budget_target_mi_bits === 'number');
    for (const tier of ['easy', 'medium', 'hard']) t.true(inUnit(table.confounds.top_target_share[tier]));
    t.true(Number.isInteger(table.eval_condition.budget) && table.eval_condition.budget > 0);
    for (const r of table.rows) {
      const keys = Object.keys(r.eval_conditions).sort();
      if (r.mode === 'ntp') {
        t.deepEqual(keys, ['argmax.byte_prefix', 'argmax.token']);
        t.is(r.eval_condition, 'argmax.token');
      } else {
        t.deepEqual(keys, [
          'no_budget.byte_prefix',
          'no_budget.token',
          'own_prompt.byte_prefix',
          'own_prompt.token',
          'same_budget.byte_prefix',
          'same_budget.token',
        ]);
        t.is(r.eval_condition, 'same_budget.token');
        t.is(r.eval_conditions['same_budget.token'].budget, table.eval_condition.budget);
        t.is(r.eval_conditions['no_budget.token'].budget, null);
      }
      // The top level is the headline condition, seed by seed.
      const head = r.eval_conditions[r.eval_condition];
      t.deepEqual(r.avg, head.avg);
      t.deepEqual(r.seeds, head.seeds);
      for (const c of Object.values(r.eval_conditions) as { avg: { mean: unknown } }[])
        t.true(inUnit(c.avg.mean));
    }
    for (const r of table.rows) {
      for (const split of ['easy', 'medium', 'hard', 'avg']) {
        const v = r[split];
        t.true(inUnit(v.mean), `${r.id} ${split} mean ${v.mean}`);
        t.true(typeof v.ci95 === 'number' && v.ci95 >= 0, `${r.id} ${split} ci95 ${v.ci95}`);
        t.is(v.n, settings.seeds.length);
      }
      t.true(
        typeof r.reasoning_length === 'number' && r.reasoning_length >= 0 && r.reasoning_length <= hardCap,
      );
      if (r.mode === 'ntp') t.is(r.reasoning_length, 0);
      t.is(r.seeds.length, settings.seeds.length);
      const post = ['ntp', 'ntr', 'rpt', 'rmt'].includes(r.id);
      for (const k of ['before', 'after']) {
        if (post) t.true(inUnit(r[k]?.mean) && typeof r[k].ci95 === 'number', `${r.id} ${k}`);
        else t.is(r[k], null, `${r.id} has no post-training`);
      }
    }
    t.deepEqual(
      table.post_training.map((p: { start: string }) => p.start),
      ['base', 'rpt', 'rmt'],
    );
    const ids = table.targets.map((x: { id: string }) => x.id);
    t.deepEqual(ids, [
      'rmt_over_rpt_avg',
      'rmt_over_rpt_reasoning_length',
      'rmt-no-dtb_below_rmt',
      'rmt-no-cas_below_rmt',
      'rmt-no-ntp_below_rmt',
      'post_training_rmt_over_base',
    ]);
    for (const x of table.targets) t.true(x.met === null || typeof x.met === 'boolean');
    t.true(table.wall_s > 0);
    t.true(typeof table.machine.cpu === 'string' && table.machine.cores > 0);
    t.truthy(table.settings.methods);

    const md = readFileSync(join(results, 'paper-table.md'), 'utf8');
    for (const r of table.rows) t.true(md.includes(`| ${r.id} |`), `row ${r.id} in the markdown`);
    t.regex(md, /95% Student-t interval over seeds/);
    t.regex(md, /## Targets/);
    for (const f of Object.values(table.plots) as string[]) {
      const svg = readFileSync(join(results, f), 'utf8');
      t.true(svg.startsWith('<svg'), f);
      t.true(md.includes(f), `${f} linked from the markdown`);
    }
    t.deepEqual(Object.keys(table.plots).sort(), ['accuracy', 'budget', 'reasoning-length', 'tier-mix']);
  },
);

test.serial('smoke: a second invocation trains nothing', async (t) => {
  t.timeout(5 * 60_000);
  const before = summaries(out);
  t.true(before.size >= 1 + settings.seeds.length * (settings.methods.rows.length + 3));
  const t0 = performance.now();
  const { stderr } = await command('--setting', 'smoke', '--out', out, '--quiet');
  const wall = (performance.now() - t0) / 1000;
  t.regex(stderr, / 0 to run/);
  t.deepEqual(summaries(out), before, 'no summary.json rewritten');
  t.true(wall < 60, `finished in ${wall.toFixed(1)} s`);
});

test('every committed setting parses and derives a valid config for every stage', (t) => {
  const dir = join(repo, 'configs', 'paper');
  const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
  t.true(files.includes('full.yaml') && files.includes('smoke.yaml'));
  for (const f of files) {
    const s = loadSettings(join(dir, f));
    const d = new Derived(s, join(root, `derive-${s.name}`), `configs/paper/${f}`);
    t.notThrows(() => d.pretrain(), f);
    for (const seed of s.seeds) {
      for (const m of s.methods.rows) t.notThrows(() => d.method(seed, m), `${f} ${m}`);
      if (s.post_training)
        for (const start of s.post_training.starts)
          t.notThrows(() => d.post(seed, start), `${f} post ${start}`);
    }
  }
});
