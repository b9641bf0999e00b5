/**
 * The settings of the paper benchmark (`npm run bench:paper`): a YAML file under configs/paper/ that
 * names the configs every stage derives from and what it changes in them. Nothing about a stage is
 * fixed in code: the base comes from `base.config` + `base.set`, each trained row from
 * `methods.config` (with `{method}` replaced) + `methods.set` + `methods.per_method[method]`, the
 * post-training check from `post_training.config` + `post_training.set`. The script only fills in
 * what ties the stages together: output folders, the seed, the starting checkpoint and the backend.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { parse } from 'yaml';
import { type PretrainConfig, parsePretrainConfig } from '../../shared/config/pretrain-config.js';
import type { Method } from '../../shared/config/rmt-defaults.js';
import { parseTrainConfig, type TrainConfig } from '../../shared/config/train-config.js';
import { budgetSchedule } from '../../shared/rl/budget.js';

/** The rows trained from the base (every method of docs/method.md section 6 but `ntr`, which is an evaluation mode). */
export type TrainedMethod = Exclude<Method, 'ntr'>;
const TRAINED: readonly TrainedMethod[] = ['ntp', 'rpt', 'rmt', 'rmt-no-dtb', 'rmt-no-cas', 'rmt-no-ntp'];

/** A post-training start: the base or one of the trained rows. */
export type Start = 'base' | TrainedMethod;

type Plain = Record<string, unknown>;

export interface PaperSettings {
  /** Short name (smoke, full): the default output folder is runs/paper-<name>. */
  name: string;
  description: string;
  /** One RL run per seed and method (the base is pre-trained once); the seed also draws the data. */
  seeds: number[];
  /** run.backend of every stage (auto | webgpu | webasm | cpu | reference). */
  backend: string;
  /**
   * Where paper-table.json / paper-table.md and the plots (under `paper/`) go, relative to the
   * repository; null: `<out>/results`.
   */
  results_dir: string | null;
  base: { config: string; set: Plain };
  methods: {
    /** Trained rows, in table order. The base's NTP and NTR rows are always there. */
    rows: TrainedMethod[];
    /** Config of a row; `{method}` becomes the method name. */
    config: string;
    /** Changes applied to every row (and to the base rows' evaluation). */
    set: Plain;
    /** Changes for one row only, after `set`. */
    per_method: Partial<Record<TrainedMethod, Plain>>;
  };
  /** The config the base's NTP and NTR rows are evaluated with (`methods.set` applies to it too). */
  base_rows: { config: string };
  /** The same GRPO run from several starting checkpoints; null: no post-training check. */
  post_training: { config: string; starts: Start[]; set: Plain } | null;
  /** The rows whose curves the plots show. */
  plots: { methods: TrainedMethod[] };
  /** The targets; see targets() in report.ts. */
  targets: {
    rmt_over_rpt_avg: number;
    rmt_over_rpt_reasoning_length: number;
    post_training_rmt_over_base: number;
  };
}

/** The repository root (this file is scripts/paper/settings.ts). */
export const REPO = resolve(import.meta.dirname, '..', '..');

const isPlain = (v: unknown): v is Plain => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Deep merge: mappings merge key by key, anything else (lists included) is replaced. */
export function merge(...layers: unknown[]): Plain {
  const out: Plain = {};
  for (const layer of layers) {
    if (!isPlain(layer)) continue;
    for (const [k, v] of Object.entries(layer)) {
      out[k] = isPlain(v) && isPlain(out[k]) ? merge(out[k], v) : isPlain(v) ? merge(v) : v;
    }
  }
  return out;
}

export class SettingsError extends Error {
  constructor(source: string, field: string, message: string) {
    super(`${source}: ${field}: ${message}`);
    this.name = 'SettingsError';
  }
}

/** `smoke` / `full` name configs/paper/<name>.yaml; anything else is a path. */
export function settingsPath(setting: string): string {
  return /^[a-z0-9-]+$/.test(setting) && !existsSync(setting)
    ? join(REPO, 'configs', 'paper', `${setting}.yaml`)
    : resolve(setting);
}

export function loadSettings(path: string): PaperSettings {
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new SettingsError(path, '(file)', (e as Error).message);
  }
  return parseSettings(raw, path);
}

export function parseSettings(raw: unknown, source: string): PaperSettings {
  const fail = (field: string, msg: string): never => {
    throw new SettingsError(source, field, msg);
  };
  if (!isPlain(raw)) return fail('(root)', 'expected a mapping');
  const known = [
    'name',
    'description',
    'seeds',
    'backend',
    'results_dir',
    'base',
    'methods',
    'base_rows',
    'post_training',
    'plots',
    'targets',
  ];
  for (const k of Object.keys(raw))
    if (!known.includes(k)) fail(k, `unknown setting (known: ${known.join(', ')})`);
  const str = (v: unknown, field: string): string =>
    typeof v === 'string' && v.length > 0 ? v : fail(field, `expected a string, got ${JSON.stringify(v)}`);
  const plain = (v: unknown, field: string): Plain =>
    v === undefined ? {} : isPlain(v) ? v : fail(field, `expected a mapping, got ${JSON.stringify(v)}`);
  const num = (v: unknown, field: string): number =>
    typeof v === 'number' && Number.isFinite(v) && v > 0
      ? v
      : fail(field, `expected a positive number, got ${JSON.stringify(v)}`);
  const methodList = (v: unknown, field: string, allowBase = false): string[] => {
    if (!Array.isArray(v) || v.length === 0) return fail(field, 'expected a non-empty list of methods');
    for (const m of v) {
      if (!(TRAINED as readonly unknown[]).includes(m) && !(allowBase && m === 'base'))
        fail(
          field,
          `"${m}" is not a trained method (${[...(allowBase ? ['base'] : []), ...TRAINED].join(', ')})`,
        );
    }
    if (new Set(v).size !== v.length) fail(field, 'lists a method twice');
    return v as string[];
  };

  const seeds = raw.seeds;
  if (!Array.isArray(seeds) || seeds.length === 0 || !seeds.every((s) => Number.isInteger(s) && s >= 0))
    fail('seeds', `expected a non-empty list of non-negative integers, got ${JSON.stringify(seeds)}`);
  if (new Set(seeds as number[]).size !== (seeds as number[]).length) fail('seeds', 'lists a seed twice');

  const base = plain(raw.base, 'base');
  const methods = plain(raw.methods, 'methods');
  const perMethod = plain(methods.per_method, 'methods.per_method');
  const rows = methodList(methods.rows, 'methods.rows') as TrainedMethod[];
  for (const [m, v] of Object.entries(perMethod)) {
    if (!rows.includes(m as TrainedMethod)) fail(`methods.per_method.${m}`, 'not one of methods.rows');
    plain(v, `methods.per_method.${m}`);
  }
  let post: PaperSettings['post_training'] = null;
  if (raw.post_training !== null && raw.post_training !== undefined) {
    const p = plain(raw.post_training, 'post_training');
    const starts = methodList(p.starts, 'post_training.starts', true) as Start[];
    for (const s of starts)
      if (s !== 'base' && !rows.includes(s)) fail('post_training.starts', `"${s}" is not in methods.rows`);
    post = { config: str(p.config, 'post_training.config'), starts, set: plain(p.set, 'post_training.set') };
  }
  const plots = plain(raw.plots, 'plots');
  const plotMethods = methodList(plots.methods, 'plots.methods') as TrainedMethod[];
  for (const m of plotMethods) if (!rows.includes(m)) fail('plots.methods', `"${m}" is not in methods.rows`);
  const t = plain(raw.targets, 'targets');
  const s: PaperSettings = {
    name: str(raw.name, 'name'),
    description: typeof raw.description === 'string' ? raw.description : '',
    seeds: seeds as number[],
    backend: raw.backend === undefined ? 'auto' : str(raw.backend, 'backend'),
    results_dir:
      raw.results_dir === null || raw.results_dir === undefined ? null : str(raw.results_dir, 'results_dir'),
    base: { config: str(base.config, 'base.config'), set: plain(base.set, 'base.set') },
    methods: {
      rows,
      config: str(methods.config, 'methods.config'),
      set: plain(methods.set, 'methods.set'),
      per_method: perMethod as PaperSettings['methods']['per_method'],
    },
    base_rows: { config: str(plain(raw.base_rows, 'base_rows').config, 'base_rows.config') },
    post_training: post,
    plots: { methods: plotMethods },
    targets: {
      rmt_over_rpt_avg: num(t.rmt_over_rpt_avg, 'targets.rmt_over_rpt_avg'),
      rmt_over_rpt_reasoning_length: num(
        t.rmt_over_rpt_reasoning_length,
        'targets.rmt_over_rpt_reasoning_length',
      ),
      post_training_rmt_over_base: num(t.post_training_rmt_over_base, 'targets.post_training_rmt_over_base'),
    },
  };
  if (!/^[A-Za-z0-9._-]+$/.test(s.name)) fail('name', 'letters, digits, ".", "_" and "-" only');
  return s;
}

/** A config file the settings name, relative to the repository root. */
const repoPath = (p: string) => (isAbsolute(p) ? p : join(REPO, p));

function readYaml(path: string, field: string, source: string): Plain {
  const file = repoPath(path);
  let raw: unknown;
  try {
    raw = parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new SettingsError(source, field, `${path}: ${(e as Error).message}`);
  }
  return isPlain(raw) ? raw : {};
}

/** Output folders of every stage, under the benchmark's out folder. */
export const layout = (out: string) => ({
  base: join(out, 'base'),
  baseFinal: join(out, 'base', 'final'),
  seed: (seed: number) => join(out, `seed-${seed}`),
  run: (seed: number, m: TrainedMethod) => join(out, `seed-${seed}`, m),
  baseEval: (seed: number) => join(out, `seed-${seed}`, 'base-eval'),
  evals: (seed: number) => join(out, `seed-${seed}`, 'evals'),
  post: (seed: number, start: Start) => join(out, `seed-${seed}`, `post-${start}`),
  startCheckpoint(seed: number, start: Start): string {
    return start === 'base' ? this.baseFinal : join(this.run(seed, start), 'final');
  },
});

/**
 * Every config of the benchmark, derived from the settings: the base's pre-training config, and per
 * seed the trained rows', the base rows' evaluation config and the post-training runs'. Each one is
 * the parsed config the library runs, so a misspelt field fails here, before any work.
 */
export class Derived {
  private readonly templates = new Map<string, Plain>();
  readonly source: string;

  constructor(
    readonly settings: PaperSettings,
    readonly out: string,
    source: string,
  ) {
    this.source = source;
  }

  private template(path: string, field: string): Plain {
    let t = this.templates.get(path);
    if (!t) {
      t = readYaml(path, field, this.source);
      this.templates.set(path, t);
    }
    return t;
  }

  private methodConfigPath(m: TrainedMethod): string {
    return this.settings.methods.config.replaceAll('{method}', m);
  }

  pretrain(): PretrainConfig {
    const s = this.settings;
    const raw = merge(this.template(s.base.config, 'base.config'), s.base.set, {
      run: { out_dir: layout(this.out).base, backend: s.backend },
    });
    return parsePretrainConfig(raw, `${s.base.config} + ${this.source} base.set`);
  }

  method(seed: number, m: TrainedMethod): TrainConfig {
    const s = this.settings;
    const L = layout(this.out);
    const raw = merge(
      this.template(this.methodConfigPath(m), 'methods.config'),
      s.methods.set,
      s.methods.per_method[m] ?? {},
      {
        method: m,
        run: { out_dir: L.run(seed, m), seed, backend: s.backend },
        model: { init_from: L.baseFinal, proxy: null },
      },
    );
    return parseTrainConfig(raw, `${this.methodConfigPath(m)} + ${this.source} methods`);
  }

  /** The base rows: `ntr` (reasoning, no budget stated) or `ntp` (argmax) of the base model. */
  baseRows(seed: number, method: 'ntp' | 'ntr'): TrainConfig {
    const s = this.settings;
    const L = layout(this.out);
    const raw = merge(this.template(s.base_rows.config, 'base_rows.config'), s.methods.set, {
      method,
      run: { out_dir: L.baseEval(seed), seed, backend: s.backend },
      model: { init_from: L.baseFinal, proxy: null },
    });
    return parseTrainConfig(raw, `${s.base_rows.config} + ${this.source} methods.set`);
  }

  /**
   * The post-training run from `start`. The proxy stays the base model for every start, so the
   * three runs see the same positions and the same easy / medium / hard split.
   */
  post(seed: number, start: Start): TrainConfig {
    const s = this.settings;
    const p = s.post_training;
    if (!p) throw new Error('no post_training in the settings');
    const L = layout(this.out);
    const raw = merge(this.template(p.config, 'post_training.config'), p.set, {
      run: { out_dir: L.post(seed, start), seed, backend: s.backend },
      model: { init_from: L.startCheckpoint(seed, start), proxy: L.baseFinal },
    });
    return parseTrainConfig(raw, `${p.config} + ${this.source} post_training.set`);
  }

  /**
   * B_T, the one budget every NTR row is evaluated at besides none: the final budget of RMT's
   * schedule (of the first trained row when there is no RMT row), whatever the row's own prompt.
   */
  sameBudget(seed: number): number {
    const rows = this.settings.methods.rows;
    const cfg = this.method(seed, rows.includes('rmt') ? 'rmt' : rows[0]);
    if (cfg.eval.budget !== null) return cfg.eval.budget;
    return budgetSchedule('dtb', cfg.budget)(cfg.train.steps, cfg.train.steps);
  }

  /** Parses every config once, so a misspelt field fails before any work. */
  checkAll(): void {
    const s = this.settings;
    this.pretrain();
    for (const seed of s.seeds) {
      for (const m of s.methods.rows) this.method(seed, m);
      this.baseRows(seed, 'ntr');
      for (const start of s.post_training?.starts ?? []) this.post(seed, start);
    }
  }
}
