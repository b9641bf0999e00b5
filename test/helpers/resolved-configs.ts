import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { parse } from 'yaml';
import { Derived, loadSettings } from '../../scripts/paper/settings.js';
import { loadPretrainConfig, parsePretrainConfig } from '../../shared/config/pretrain-config.js';
import { loadTrainConfig, parseTrainConfig } from '../../shared/config/train-config.js';

/**
 * The resolved config of every file under configs/, and of every stage the paper settings derive,
 * as the JSON text runs fingerprint (key order included). A stage is skipped or resumed by comparing
 * these texts, so a change to the config code must leave them as they are.
 *
 * Each is recorded with its input (the parsed YAML it came from, comments aside): when a config file
 * itself changes, its new resolution cannot be checked against the previous code, and the test says
 * so instead of comparing unlike with unlike. The fixture keeps every recorded input's output.
 */
export const REPO = join(import.meta.dirname, '..', '..');

/** Pre-training configs; every other top-level file is an RL config, configs/paper/ holds settings. */
export const PRETRAIN_FILES = new Set([
  'configs/base.yaml',
  'configs/demo/base.yaml',
  'configs/pretrain-tiny.yaml',
]);

function files(dir: string): string[] {
  return readdirSync(join(REPO, dir), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)]))
    .sort();
}

/** The repository's absolute path is replaced, so the texts are the same in every clone. */
const text = (v: unknown) => JSON.stringify(v).replaceAll(REPO, '<repo>');

/** Inputs whose resolution has a rule of its own: key order of the open mappings, normalised lists. */
const INLINE_TRAIN: Record<string, unknown> = {
  defaults: {},
  'data.math order': { data: { math: { reasoning_fraction: 0.3, documents: 10, split: 'held_out' } } },
  'data.sources filled': {
    data: {
      sources: [{ path: 'corpus/a.jsonl' }, { corpus: 'math', weight: 2 }, { path: 'b/', id_field: 'id' }],
      eval_sources: [{ path: 'c.parquet', field: 'body' }],
      max_context: 128,
    },
  },
  'report_to deduplicated': { run: { report_to: ['tensorboard', 'jsonl', 'tensorboard'] } },
  'nullable fields set': { model: { init_from: 'x', proxy: 'y' }, eval: { budget: 12 } },
};
const INLINE_PRETRAIN: Record<string, unknown> = {
  defaults: {},
  'model.config order': {
    model: {
      config: { hidden_size: 32, rope_scaling: { rope_type: 'linear', factor: 2 }, model_type: 'llama' },
    },
  },
  'data.math order': { data: { math: { statement_fraction: 0.4, documents: 10 } } },
  'tokenizer.dir': { tokenizer: { dir: 'tok' }, model: { init_from: 'ckpt' } },
};

/** What a resolved text came from, as canonical JSON. */
const yamlOf = (path: string): unknown =>
  parse(readFileSync(isAbsolute(path) ? path : join(REPO, path), 'utf8'));

export interface Resolved {
  /** The input (parsed YAML or inline value) as JSON. */
  input: string;
  /** The resolved config as JSON. */
  output: string;
}

export function resolvedConfigs(): Record<string, Resolved> {
  const out: Record<string, Resolved> = {};
  for (const f of files('configs')) {
    if (!f.endsWith('.yaml')) continue;
    const path = join(REPO, f);
    if (f.startsWith('configs/paper/')) {
      const s = loadSettings(path);
      const used = [
        s.base.config,
        ...s.methods.rows.map((m) => s.methods.config.replaceAll('{method}', m)),
        s.base_rows.config,
        ...(s.post_training ? [s.post_training.config] : []),
      ];
      const input = JSON.stringify([yamlOf(path), ...used.map((u) => [u, yamlOf(u)])]);
      const d = new Derived(s, 'runs/paper-fixture', path);
      out[`${f} base`] = { input, output: text(d.pretrain()) };
      for (const seed of s.seeds) {
        for (const m of s.methods.rows)
          out[`${f} seed ${seed} ${m}`] = { input, output: text(d.method(seed, m)) };
        for (const m of ['ntp', 'ntr'] as const)
          out[`${f} seed ${seed} base ${m}`] = { input, output: text(d.baseRows(seed, m)) };
        for (const start of s.post_training?.starts ?? [])
          out[`${f} seed ${seed} post ${start}`] = { input, output: text(d.post(seed, start)) };
      }
    } else {
      const input = JSON.stringify(yamlOf(path));
      const load = PRETRAIN_FILES.has(f) ? loadPretrainConfig : loadTrainConfig;
      out[f] = { input, output: text(load(relative(process.cwd(), path))) };
    }
  }
  for (const [k, raw] of Object.entries(INLINE_TRAIN))
    out[`train: ${k}`] = { input: JSON.stringify(raw), output: text(parseTrainConfig(raw, k)) };
  for (const [k, raw] of Object.entries(INLINE_PRETRAIN))
    out[`pretrain: ${k}`] = { input: JSON.stringify(raw), output: text(parsePretrainConfig(raw, k)) };
  return out;
}

export const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export const FIXTURE = join(REPO, 'test', 'fixtures', 'resolved-configs.json');

/** name -> sha256 of an input -> sha256 of its resolved config. */
export type Fixture = Record<string, Record<string, string>>;

export const readFixture = (): Fixture =>
  existsSync(FIXTURE) ? (JSON.parse(readFileSync(FIXTURE, 'utf8')) as Fixture) : {};

// `tsx test/helpers/resolved-configs.ts --write` adds the current inputs and their resolutions to the
// fixture. Record only with code known to resolve as before (the previous commit's config code).
if (process.argv[2] === '--write') {
  const fixture = readFixture();
  for (const [name, r] of Object.entries(resolvedConfigs())) {
    fixture[name] = { ...fixture[name], [sha256(r.input)]: sha256(r.output) };
  }
  writeFileSync(FIXTURE, `${JSON.stringify(fixture, null, 1)}\n`);
  process.stdout.write(`wrote ${FIXTURE}\n`);
}
