/**
 * `npm run bench:paper -- [--setting smoke|full|<yaml>] [--out DIR] [--results DIR] [--quiet]`:
 * the paper's table from nothing. Stages, each skipped when its output exists:
 *
 *   1. tokenizer + pre-training of the base (once);
 *   2. per seed: the base's NTP and NTR evaluations; each trained row (ntp, rpt, rmt, the ablations)
 *      from the base, with its own final evaluation (`eval.json`: ntr under the method's prompt at
 *      t = T, ntp for the NTP run);
 *   3. per seed and start (base, rpt, rmt): the post-training check, the same GRPO run on held-out
 *      disjoint math word problems, evaluated before (the start checkpoint) and after;
 *   4. the table over seeds (paper-table.json / .md) with the targets, and the plots.
 *
 * Everything a stage runs comes from the settings file (configs/paper/*.yaml) and the configs it
 * names. Ctrl-C stops after the current training step with a checkpoint; running the same command
 * again resumes there. See docs/paper-table.md.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { cpus, platform, release, totalmem } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { METHOD_TABLE } from '../shared/config/rmt-defaults.js';
import type { TrainConfig } from '../shared/config/train-config.js';
import { createBackend } from '../shared/kernels/index.js';
import { evalBudget } from '../shared/run/coordinator.js';
import type { EvalResult } from '../shared/run/evaluate.js';
import { loadRunContext } from '../shared/run/run-context.js';
import { Scorer } from '../shared/run/scorer.js';
import { evaluateCheckpoint, evaluateCheckpointAt } from '../shared/train/evaluate-checkpoint.js';
import { pretrain } from '../shared/train/pretrain.js';
import { train } from '../shared/train/rmt-train.js';
import { budgetTargetInformation, type TierShare, topTargetShares } from './paper/confounds.js';
import {
  buildPost,
  buildRows,
  conditionKey,
  markdown,
  type PostTrainingResult,
  type ReportMeta,
  type RowSource,
  SCHEMA,
  seedEval,
  targets,
  writePlots,
} from './paper/report.js';
import {
  Derived,
  layout,
  loadSettings,
  type PaperSettings,
  REPO,
  type Start,
  settingsPath,
} from './paper/settings.js';

const USAGE = `usage: npm run bench:paper -- [options]

Runs the paper benchmark (base pre-training, every method from the base over several seeds, their
evaluation, the post-training check) and writes paper-table.json, paper-table.md and plots. A stage
whose output exists is skipped, so an interrupted run resumes where it stopped.

options:
  --setting <name|yaml>  math-all | smoke | full | add3 (configs/paper/<name>.yaml) or a settings file
                         (default: math-all, the headline table)
  --out <dir>            where the runs go (default: runs/paper-<name>)
  --results <dir>        where the table and plots go (default: the setting's results_dir, else <out>/results)
  --seeds <list>         run only these seeds' stages (and the base), e.g. 2,3: start one invocation
                         per core with disjoint lists; the table is written once every seed is done
  --partial              when some seeds are not done, write the table over those that are (it lists
                         the planned seeds and the missing ones); use it to look at a run under way
  --quiet                only the benchmark's own progress lines, not the library's
  -h, --help             this text
`;

interface LedgerEntry {
  kind: string;
  /** Seconds spent in the stage over every invocation (an interrupted stage adds its part). */
  wall_s: number;
  done: boolean;
  /** Kernel backend the stage trained on (training stages). */
  backend?: string;
}

type Ledger = Record<string, LedgerEntry>;

interface Stage {
  id: string;
  kind: 'pretrain' | 'train' | 'eval' | 'post-train' | 'post-eval';
  label: string;
  /** The stage's output exists (and was made with this config). */
  done(): boolean;
  /** Runs the stage; returns the backend it trained on, if it trained. */
  run(): Promise<string | undefined>;
}

class UsageError extends Error {}

const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;

/**
 * A stage folder made with another config is not silently reused: the caller decides. `field`
 * names where the config sits in the file (the evaluation files keep it under `config`).
 */
function checkSameConfig(file: string, cfg: unknown, what: string, field?: 'config'): void {
  if (!existsSync(file)) return;
  const stored = readJson<Record<string, unknown>>(file);
  if (JSON.stringify(field ? stored[field] : stored) !== JSON.stringify(cfg)) {
    throw new Error(
      `${what}: ${file} was made with a different config than the settings now give; ` +
        'delete it (or use another --out) to run that stage again',
    );
  }
}

function writeJsonAtomic(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  // A temporary file of this process's own: invocations with disjoint --seeds write the same ledger,
  // and two writing one shared .tmp at once interleave their bytes (then rename the mix into place).
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, path);
}

/** What a run's scoring cache (`<out_dir>/data`: token streams and proxy entropies) depends on. */
const scoringKey = (cfg: TrainConfig) =>
  JSON.stringify({
    data: cfg.data,
    seed: cfg.run.seed,
    proxy: resolve(cfg.model.proxy ?? cfg.model.init_from),
    k: cfg.curriculum.k,
  });

/**
 * Before a stage scores its positions: copy the scoring cache of a run of the same seed with the
 * same data, seed and proxy, so each seed scores its streams once instead of once per row (the
 * scorer still checks each cached file's own key and recomputes on a mismatch).
 */
function reuseScoring(cfg: TrainConfig, siblings: readonly TrainConfig[]): void {
  const dir = join(cfg.run.out_dir, 'data');
  if (existsSync(dir)) return;
  const key = scoringKey(cfg);
  const from = siblings.find(
    (o) =>
      resolve(o.run.out_dir) !== resolve(cfg.run.out_dir) &&
      existsSync(join(o.run.out_dir, 'data', 'meta.json')) &&
      scoringKey(o) === key,
  );
  if (from) cpSync(join(from.run.out_dir, 'data'), dir, { recursive: true });
}

/** A finished training run: summary at the last step, final weights and final evaluation. */
function trainDone(cfg: TrainConfig): boolean {
  const out = cfg.run.out_dir;
  if (!existsSync(join(out, 'summary.json')) || !existsSync(join(out, 'eval.json'))) return false;
  if (!existsSync(join(out, 'final', 'model.safetensors'))) return false;
  return readJson<{ steps: number }>(join(out, 'summary.json')).steps === cfg.train.steps;
}

interface EvalFile {
  checkpoint: string;
  mode: 'ntp' | 'ntr';
  budget: number | null;
  wall_s: number;
  config: TrainConfig;
  result: EvalResult;
}

/** An NTR row evaluated with no budget stated and with the same budget B_T as every other row. */
interface ConditionsFile {
  checkpoint: string;
  budgets: [null, number];
  wall_s: number;
  config: { run: TrainConfig; budgets: [null, number] };
  results: [EvalResult, EvalResult];
}

/** The confound figures of docs/paper-table.md, with the thresholds the benchmark aims below. */
async function confounds(
  s: PaperSettings,
  derived: Derived,
  row: (seed: number) => TrainConfig,
): Promise<Record<string, unknown>> {
  let info: ReturnType<typeof budgetTargetInformation> = null;
  const backend = await createBackend(s.backend as Parameters<typeof createBackend>[0]);
  const bySeed: { seed: number; train: Record<string, TierShare>; eval: Record<string, TierShare> }[] = [];
  try {
    for (const seed of s.seeds) {
      const cfg = row(seed);
      const run = await loadRunContext('eval', cfg);
      // The rows read the base's tokenizer, the one its pre-training corpus was cut with.
      info ??= budgetTargetInformation(derived.pretrain(), (p) => run.tokenizer.encode(p).length === 1);
      const scorer = new Scorer(backend);
      const train = await scorer.keyPositions(run, 'train');
      const heldOut = await scorer.keyPositions(run, 'held_out');
      const shares = topTargetShares(train, heldOut, cfg, (id) => run.tokenizer.decode([id]));
      bySeed.push({ seed, ...shares });
    }
  } finally {
    await backend.dispose();
  }
  const worst = (which: 'train' | 'eval') =>
    Object.fromEntries(
      (['easy', 'medium', 'hard'] as const).map((tier) => [
        tier,
        Math.max(...bySeed.map((x) => x[which][tier].share)),
      ]),
    );
  return {
    budget_target_mi_bits: info ? info.target.bits : null,
    budget_leading_digit_mi_bits: info ? info.leading_digit.bits : null,
    budget_information: info,
    top_target_share: worst('train'),
    top_target_share_eval: worst('eval'),
    top_target_share_by_seed: bySeed,
    thresholds: { budget_target_mi_bits: 0.02, top_target_share: 0.3 },
    notes:
      'budget_target_mi_bits: I(stated budget; digit after </think>) over the reasoning examples of the base pre-training corpus, Miller-Madow corrected. ' +
      "top_target_share: per curriculum training tier (over the positions above the entropy filter), the most frequent target's share; the largest over seeds. top_target_share_eval: the same over RPT's nested evaluation splits of the held-out positions.",
  };
}

/** `rmt eval` in-process: the config's held-out positions (proxy-scored, cached in its out_dir). */
async function evaluate(
  cfg: TrainConfig,
  checkpoint: string,
  log: (l: string) => void,
): Promise<Omit<EvalFile, 'config' | 'wall_s'>> {
  const mode = METHOD_TABLE[cfg.method].reasoning === 'no' ? 'ntp' : 'ntr';
  const backend = await createBackend(cfg.run.backend);
  try {
    const { budget, result } = await evaluateCheckpoint(backend, cfg, checkpoint, mode, log);
    return { checkpoint, mode, budget, result };
  } finally {
    await backend.dispose();
  }
}

function machine(backends: string[]): Record<string, unknown> {
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memory_gib: Math.round(totalmem() / 2 ** 30),
    os: `${platform()} ${release()}`,
    node: process.version,
    backend: [...new Set(backends)].join(', ') || 'unknown',
  };
}

function git(...args: string[]): string {
  try {
    return execFileSync('git', args, {
      cwd: REPO,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
  } catch {
    return 'unknown';
  }
}

const clock = (s: number) => {
  const m = Math.floor(s / 60);
  return m >= 60
    ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`
    : `${m}m${String(Math.floor(s % 60)).padStart(2, '0')}s`;
};

/** Runs (or resumes) the benchmark of a settings file into `out`; returns the table's JSON path. */
export async function runPaperBenchmark(opts: {
  settingsFile: string;
  out?: string;
  results?: string;
  /**
   * Run only these seeds' stages (and the base pre-training). Several invocations with disjoint
   * seeds can share one output folder, one per core; the one that finds every stage done writes the
   * table.
   */
  seeds?: number[];
  /** Write the table from the seeds whose stages are all done when others are not (it says so). */
  partial?: boolean;
  quiet?: boolean;
  signal?: AbortSignal;
  say?: (line: string) => void;
  /** Called after each training step of a stage (pre-training and RL runs). */
  onStep?: (stage: string, step: number) => void;
}): Promise<{ json: string; md: string; ran: number; skipped: number; stopped: boolean }> {
  const settingsFile = opts.settingsFile;
  let s: PaperSettings = loadSettings(settingsFile);
  const out = resolve(opts.out ?? join(REPO, 'runs', `paper-${s.name}`));
  const resultsDir = resolve(
    opts.results ?? (s.results_dir ? join(REPO, s.results_dir) : join(out, 'results')),
  );
  const say = opts.say ?? ((l: string) => process.stderr.write(`${l}\n`));
  const log = opts.quiet ? () => {} : (l: string) => process.stderr.write(`${l}\n`);
  const derived = new Derived(s, out, relative(REPO, settingsFile) || settingsFile);
  derived.checkAll();
  const L = layout(out);
  mkdirSync(out, { recursive: true });
  writeJsonAtomic(join(out, 'settings.json'), s);
  const ledgerPath = join(out, 'stages.json');
  let ledger: Ledger = existsSync(ledgerPath) ? readJson<Ledger>(ledgerPath) : {};
  for (const seed of opts.seeds ?? []) {
    if (!s.seeds.includes(seed)) throw new UsageError(`--seeds: ${seed} is not a seed of ${settingsFile}`);
  }
  const signal = opts.signal;

  const stages: Stage[] = [];
  const pre = derived.pretrain();
  stages.push({
    id: 'pretrain',
    kind: 'pretrain',
    label: `tokenizer + base pre-training (${pre.train.steps} steps)`,
    done: () => {
      checkSameConfig(join(pre.run.out_dir, 'config.resolved.json'), pre, 'base');
      return (
        existsSync(join(L.baseFinal, 'model.safetensors')) &&
        existsSync(join(pre.run.out_dir, 'summary.json')) &&
        readJson<{ steps: number }>(join(pre.run.out_dir, 'summary.json')).steps === pre.train.steps
      );
    },
    run: async () =>
      (await pretrain(pre, { log, signal, onStep: (n) => opts.onStep?.('pretrain', n) })).backend,
  });
  /** Every config of a seed whose out_dir may hold a scoring cache to share. */
  const seedConfigs = (seed: number): TrainConfig[] => [
    derived.baseRows(seed, 'ntr'),
    derived.baseRows(seed, 'ntp'),
    ...s.methods.rows.map((m) => derived.method(seed, m)),
    ...(s.post_training?.starts ?? []).map((start) => derived.post(seed, start)),
  ];
  const evalStage = (
    id: string,
    kind: Stage['kind'],
    label: string,
    file: string,
    cfg: TrainConfig,
    checkpoint: string,
  ): Stage => ({
    id,
    kind,
    label,
    done: () => {
      checkSameConfig(file, cfg, label, 'config');
      return existsSync(file);
    },
    run: async () => {
      const t0 = performance.now();
      reuseScoring(cfg, seedConfigs(cfg.run.seed));
      const e = await evaluate(cfg, checkpoint, log);
      writeJsonAtomic(file, {
        ...e,
        wall_s: (performance.now() - t0) / 1000,
        config: cfg,
      } satisfies EvalFile);
      return undefined;
    },
  });
  const conditionsStage = (
    id: string,
    label: string,
    file: string,
    cfg: TrainConfig,
    checkpoint: string,
    bT: number,
  ): Stage => {
    const budgets: [null, number] = [null, bT];
    const config = { run: cfg, budgets };
    return {
      id,
      kind: 'eval',
      label,
      done: () => {
        checkSameConfig(file, config, label, 'config');
        return existsSync(file);
      },
      run: async () => {
        const t0 = performance.now();
        reuseScoring(cfg, seedConfigs(cfg.run.seed));
        const backend = await createBackend(cfg.run.backend);
        try {
          const results = await evaluateCheckpointAt(backend, cfg, checkpoint, 'ntr', budgets, log);
          writeJsonAtomic(file, {
            checkpoint,
            budgets,
            wall_s: (performance.now() - t0) / 1000,
            config,
            results: results as [EvalResult, EvalResult],
          } satisfies ConditionsFile);
        } finally {
          await backend.dispose();
        }
        return undefined;
      },
    };
  };
  const trainStage = (id: string, kind: Stage['kind'], label: string, cfg: TrainConfig): Stage => ({
    id,
    kind,
    label: `${label} (${cfg.train.steps} steps)`,
    done: () => {
      checkSameConfig(join(cfg.run.out_dir, 'config.resolved.json'), cfg, label);
      return trainDone(cfg);
    },
    run: async () => {
      reuseScoring(cfg, seedConfigs(cfg.run.seed));
      return (await train(cfg, { log, signal, onStep: (n) => opts.onStep?.(id, n) })).backend;
    },
  });
  for (const seed of s.seeds) {
    const ev = L.evals(seed);
    for (const mode of ['ntp', 'ntr'] as const) {
      stages.push(
        evalStage(
          `seed-${seed}/eval/base-${mode}`,
          'eval',
          `seed ${seed}: eval base ${mode.toUpperCase()}`,
          join(ev, `base-${mode}.json`),
          derived.baseRows(seed, mode),
          L.baseFinal,
        ),
      );
    }
    for (const m of s.methods.rows) {
      stages.push(
        trainStage(`seed-${seed}/${m}`, 'train', `seed ${seed}: train ${m}`, derived.method(seed, m)),
      );
    }
    // Every NTR row again under the same two prompts (none, and the same B_T for all).
    const bT = derived.sameBudget(seed);
    const reasoningRows: { id: string; cfg: TrainConfig; checkpoint: string }[] = [
      { id: 'ntr', cfg: derived.baseRows(seed, 'ntr'), checkpoint: L.baseFinal },
      ...s.methods.rows
        .filter((m) => METHOD_TABLE[m].reasoning !== 'no')
        .map((m) => ({ id: m, cfg: derived.method(seed, m), checkpoint: join(L.run(seed, m), 'final') })),
    ];
    for (const r of reasoningRows) {
      stages.push(
        conditionsStage(
          `seed-${seed}/conditions/${r.id}`,
          `seed ${seed}: eval ${r.id} with no budget and with B_T = ${bT}`,
          join(ev, `conditions-${r.id}.json`),
          r.cfg,
          r.checkpoint,
          bT,
        ),
      );
    }
    for (const start of s.post_training?.starts ?? []) {
      stages.push(
        evalStage(
          `seed-${seed}/post-${start}/before`,
          'post-eval',
          `seed ${seed}: post-training from ${start}, eval before`,
          join(ev, `post-${start}-before.json`),
          derived.post(seed, start),
          L.startCheckpoint(seed, start),
        ),
      );
      stages.push(
        trainStage(
          `seed-${seed}/post-${start}`,
          'post-train',
          `seed ${seed}: post-training from ${start}`,
          derived.post(seed, start),
        ),
      );
    }
  }

  // With --seeds, other invocations may be writing the ledger too: each write merges this
  // invocation's stages into what is on disk instead of replacing it.
  const mine = stages.filter(
    (st) =>
      !opts.seeds || st.id === 'pretrain' || opts.seeds.some((seed) => st.id.startsWith(`seed-${seed}/`)),
  );
  const saveLedger = () => {
    if (opts.seeds && existsSync(ledgerPath)) {
      const onDisk = readJson<Ledger>(ledgerPath);
      for (const st of mine) if (ledger[st.id]) onDisk[st.id] = ledger[st.id];
      ledger = onDisk;
    }
    writeJsonAtomic(ledgerPath, ledger);
  };
  const t0 = performance.now();
  let ran = 0;
  let skipped = 0;
  let stopped = false;
  const todo = mine.filter((st) => {
    const d = st.done();
    if (d) {
      skipped++;
      ledger[st.id] = { ...ledger[st.id], kind: st.kind, wall_s: ledger[st.id]?.wall_s ?? 0, done: true };
    }
    return !d;
  });
  say(
    `[paper ${s.name}] ${mine.length} stages${opts.seeds ? ` (seeds ${opts.seeds.join(', ')} of ${stages.length})` : ''}: ${skipped} done earlier, ${todo.length} to run; out ${relative(process.cwd(), out) || '.'}`,
  );
  for (const [i, st] of todo.entries()) {
    if (signal?.aborted) {
      stopped = true;
      break;
    }
    say(`[paper ${s.name} ${i + 1}/${todo.length} ${clock((performance.now() - t0) / 1000)}] ${st.label}`);
    const ts = performance.now();
    let backend: string | undefined;
    try {
      backend = await st.run();
    } catch (err) {
      // Stopped before its first step (e.g. while scoring positions): nothing to keep, rerun it.
      if (!signal?.aborted) throw err;
    } finally {
      const dt = (performance.now() - ts) / 1000;
      ledger[st.id] = {
        kind: st.kind,
        wall_s: (ledger[st.id]?.wall_s ?? 0) + dt,
        done: false,
        ...((backend ?? ledger[st.id]?.backend) ? { backend: backend ?? ledger[st.id]?.backend } : {}),
      };
      saveLedger();
    }
    if (!st.done()) {
      // A training job stopped by the signal leaves a checkpoint and no final output.
      stopped = true;
      break;
    }
    ledger[st.id].done = true;
    saveLedger();
    ran++;
    say(`  done in ${((performance.now() - ts) / 1000).toFixed(1)} s`);
  }
  saveLedger();
  const json = join(resultsDir, 'paper-table.json');
  const md = join(resultsDir, 'paper-table.md');
  if (stopped) {
    say(`[paper ${s.name}] stopped; run the same command again to resume`);
    return { json, md, ran, skipped, stopped };
  }
  let pending = stages.filter((st) => !st.done());
  const planned = s.seeds;
  if (pending.length > 0 && opts.partial) {
    // The table of the seeds whose every stage is done, marked as such; the rest resume later.
    const seedOf = (st: Stage) => Number(/^seed-(\d+)\//.exec(st.id)?.[1] ?? Number.NaN);
    const shared = pending.filter((st) => Number.isNaN(seedOf(st)));
    const complete = s.seeds.filter((seed) => !pending.some((st) => seedOf(st) === seed));
    if (shared.length === 0 && complete.length > 0) {
      say(
        `[paper ${s.name}] --partial: the table over seeds ${complete.join(', ')} of ${s.seeds.join(', ')}`,
      );
      s = { ...s, seeds: complete };
      pending = [];
    }
  }
  if (pending.length > 0) {
    say(
      `[paper ${s.name}] seeds ${opts.seeds?.join(', ')} done; ${pending.length} stages of other seeds are not (${pending[0].id}, ...): the invocation that finishes last writes the table`,
    );
    return { json, md, ran, skipped, stopped };
  }

  // The table.
  const evalOf = (file: string) => readJson<EvalFile>(file).result;
  const trainedEval = (seed: number, m: string) => readJson<EvalResult>(join(L.seed(seed), m, 'eval.json'));
  const post: PostTrainingResult[] = (s.post_training?.starts ?? []).map((start: Start) =>
    buildPost(
      start,
      start === 'base' ? 'base/final' : `seed-{seed}/${start}/final`,
      s.seeds.map((seed) => ({
        seed,
        before: seedEval(seed, evalOf(join(L.evals(seed), `post-${start}-before.json`))),
        after: seedEval(seed, readJson<EvalResult>(join(L.post(seed, start), 'eval.json'))),
      })),
    ),
  );
  const hasBasePost = s.post_training?.starts.includes('base') ?? false;
  /**
   * A row's conditions: NTP rows by argmax; NTR rows under the same B_T, no budget and their own
   * prompt, each scored by both rules. The top-level numbers are the same-budget token match.
   */
  const conditionsOf = (
    id: string,
    mode: 'ntp' | 'ntr',
    own: (seed: number) => { budget: number | null; result: EvalResult },
  ): Pick<RowSource, 'conditions' | 'headline'> => {
    const conditions: RowSource['conditions'] = {};
    const add = (
      prompt: Parameters<typeof conditionKey>[0],
      at: (seed: number) => { budget: number | null; result: EvalResult },
    ) => {
      for (const rule of ['token', 'byte-prefix'] as const) {
        conditions[conditionKey(prompt, rule)] = {
          budget: at(s.seeds[0]).budget,
          match: rule,
          evals: s.seeds.map((seed) => seedEval(seed, at(seed).result, rule)),
        };
      }
    };
    if (mode === 'ntp') {
      add('argmax', own);
      return { conditions, headline: conditionKey('argmax', 'token') };
    }
    const file = (seed: number) => readJson<ConditionsFile>(join(L.evals(seed), `conditions-${id}.json`));
    add('same_budget', (seed) => ({ budget: file(seed).budgets[1], result: file(seed).results[1] }));
    add('no_budget', (seed) => ({ budget: null, result: file(seed).results[0] }));
    add('own_prompt', own);
    return { conditions, headline: conditionKey('same_budget', 'token') };
  };
  const baseOwn = (mode: 'ntp' | 'ntr') => (seed: number) => {
    const f = readJson<EvalFile>(join(L.evals(seed), `base-${mode}.json`));
    return { budget: f.budget, result: f.result };
  };
  const sources: RowSource[] = [
    ...(['ntp', 'ntr'] as const).map((mode) => ({
      id: mode,
      method: mode,
      model: 'base',
      mode,
      ...conditionsOf(mode, mode, baseOwn(mode)),
      postStart: hasBasePost ? ('base' as Start) : null,
    })),
    ...s.methods.rows.map((m) => {
      const mode = (METHOD_TABLE[m].reasoning === 'no' ? 'ntp' : 'ntr') as 'ntp' | 'ntr';
      return {
        id: m === 'ntp' ? 'ntp-trained' : m,
        method: m,
        model: m,
        mode,
        ...conditionsOf(m, mode, (seed) => ({
          budget: mode === 'ntp' ? null : evalBudget(derived.method(seed, m)),
          result: trainedEval(seed, m),
        })),
        postStart: s.post_training?.starts.includes(m) ? m : null,
      };
    }),
  ];
  const rows = buildRows(sources, post);
  const tgts = targets(s, rows, post);
  const plotDir = join(resultsDir, 'paper');
  const totalSteps = Object.fromEntries(
    s.methods.rows.map((m) => [m, derived.method(s.seeds[0], m).train.steps]),
  );
  const plots = writePlots(
    s,
    out,
    plotDir,
    totalSteps,
    rows.filter((r) => r.model === 'base'),
  );
  const backends = Object.values(ledger).flatMap((e) => (e.backend ? [e.backend] : []));
  const byKind: Record<string, number> = {};
  for (const st of stages) byKind[st.kind] = (byKind[st.kind] ?? 0) + (ledger[st.id]?.wall_s ?? 0);
  const meta: ReportMeta = {
    generated_at: new Date().toISOString(),
    commit: git('rev-parse', 'HEAD'),
    machine: machine(backends),
    wall_s: Object.values(byKind).reduce((a, b) => a + b, 0),
    wall_s_by_kind: byKind,
    settings_file: relative(REPO, settingsFile) || settingsFile,
    out_dir: relative(REPO, out) || out,
    ...(s.seeds.length < planned.length ? { seeds_planned: planned } : {}),
  };
  const confoundFigures = await confounds(s, derived, (seed) =>
    derived.method(seed, s.methods.rows.includes('rmt') ? 'rmt' : s.methods.rows[0]),
  );
  const table = {
    schema: SCHEMA,
    setting: s.name,
    description: s.description.trim(),
    ...meta,
    units: {
      accuracy: 'fraction of held-out positions predicted exactly (0-1)',
      reasoning_length: 'tokens between <think> and </think>, mean per position',
    },
    ci95: '95% Student-t interval over seeds: mean ± t(0.975, n-1) * s / sqrt(n) (null with one seed)',
    seeds: s.seeds,
    eval_condition: {
      budget: derived.sameBudget(s.seeds[0]),
      match: 'token',
      description:
        "rows' top-level easy / medium / hard / avg, reasoning_length and seeds: NTR rows with the same stated budget B_T for every row, scored by the exact next token; NTP rows by argmax. Every condition is under each row's eval_conditions.",
    },
    confounds: confoundFigures,
    rows,
    post_training: post,
    targets: tgts,
    plots: Object.fromEntries(Object.entries(plots).map(([k, f]) => [k, `paper/${f}`])),
    stages: ledger,
    settings: s,
    configs: {
      base: s.base.config,
      methods: Object.fromEntries(s.methods.rows.map((m) => [m, s.methods.config.replaceAll('{method}', m)])),
      base_rows: s.base_rows.config,
      post_training: s.post_training?.config ?? null,
    },
  };
  writeJsonAtomic(json, table);
  writeFileSync(md, markdown(s, meta, rows, post, tgts, plots, 'paper', confoundFigures));
  say(
    `[paper ${s.name}] ${ran} stages run, ${skipped} skipped; table ${relative(process.cwd(), md)}; targets: ${tgts
      .map((t) => `${t.id} ${t.met === null ? 'n/a' : t.met ? 'met' : 'NOT met'}`)
      .join(', ')}`,
  );
  return { json, md, ran, skipped, stopped };
}

function parseSeeds(list: string): number[] {
  const seeds = list.split(',').map((x) => Number(x.trim()));
  if (seeds.length === 0 || !seeds.every((x) => Number.isInteger(x))) {
    throw new UsageError(`--seeds must be a comma-separated list of integers (got ${JSON.stringify(list)})`);
  }
  return seeds;
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      setting: { type: 'string', default: 'math-all' },
      out: { type: 'string' },
      results: { type: 'string' },
      seeds: { type: 'string' },
      partial: { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const file = settingsPath(values.setting);
  if (!existsSync(file)) throw new UsageError(`no settings file ${file}`);
  const stop = new AbortController();
  process.once('SIGINT', () => {
    process.stderr.write('\nstopping after this step (Ctrl-C again to abort without a checkpoint)\n');
    stop.abort();
    process.once('SIGINT', () => process.exit(130));
  });
  const r = await runPaperBenchmark({
    settingsFile: file,
    out: values.out,
    results: values.results,
    seeds: values.seeds === undefined ? undefined : parseSeeds(values.seeds),
    partial: values.partial,
    quiet: values.quiet,
    signal: stop.signal,
  });
  return r.stopped ? 130 : 0;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err: Error) => {
      process.stderr.write(`bench:paper: ${err.message}\n`);
      if (err instanceof UsageError) process.stderr.write(USAGE);
      else if (process.env.RMT_DEBUG) process.stderr.write(`${err.stack}\n`);
      process.exit(err instanceof UsageError ? 2 : 1);
    },
  );
}
