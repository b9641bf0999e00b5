import { createHash } from 'node:crypto';
import { readdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { Derived, loadSettings } from '../../scripts/paper/settings.js';
import { loadPretrainConfig, parsePretrainConfig } from '../../shared/config/pretrain-config.js';
import { loadTrainConfig, parseTrainConfig } from '../../shared/config/train-config.js';

/**
 * The resolved config of every file under configs/, and of every stage the paper settings derive,
 * as the JSON text runs fingerprint (key order included). A stage is skipped or resumed by comparing
 * these texts, so a change to the config code must leave them as they are.
 */
export const REPO = join(import.meta.dirname, '..', '..');

/** Pre-training configs; every other top-level file is an RL config, configs/paper/ holds settings. */
export const PRETRAIN_FILES = new Set(['configs/base.yaml', 'configs/pretrain-tiny.yaml']);

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
  'data.math order': { data: { math: { reasoningFraction: 0.3, documents: 10, split: 'held_out' } } },
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
  'data.math order': { data: { math: { statementFraction: 0.4, documents: 10 } } },
  'tokenizer.dir': { tokenizer: { dir: 'tok' }, model: { init_from: 'ckpt' } },
};

/** The texts by name; resolvedConfigDigests() holds their sha256 (what the fixture keeps). */
export function resolvedConfigs(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of files('configs')) {
    if (!f.endsWith('.yaml')) continue;
    const path = join(REPO, f);
    if (f.startsWith('configs/paper/')) {
      const s = loadSettings(path);
      const d = new Derived(s, 'runs/paper-fixture', path);
      out[`${f} base`] = text(d.pretrain());
      for (const seed of s.seeds) {
        for (const m of s.methods.rows) out[`${f} seed ${seed} ${m}`] = text(d.method(seed, m));
        for (const m of ['ntp', 'ntr'] as const)
          out[`${f} seed ${seed} base ${m}`] = text(d.baseRows(seed, m));
        for (const start of s.post_training?.starts ?? [])
          out[`${f} seed ${seed} post ${start}`] = text(d.post(seed, start));
      }
    } else if (PRETRAIN_FILES.has(f)) {
      out[f] = text(loadPretrainConfig(relative(process.cwd(), path)));
    } else {
      out[f] = text(loadTrainConfig(relative(process.cwd(), path)));
    }
  }
  for (const [k, raw] of Object.entries(INLINE_TRAIN)) out[`train: ${k}`] = text(parseTrainConfig(raw, k));
  for (const [k, raw] of Object.entries(INLINE_PRETRAIN))
    out[`pretrain: ${k}`] = text(parsePretrainConfig(raw, k));
  return out;
}

export const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');

export function resolvedConfigDigests(): Record<string, string> {
  return Object.fromEntries(Object.entries(resolvedConfigs()).map(([k, v]) => [k, sha256(v)]));
}

// `tsx test/helpers/resolved-configs.ts --write` records the digests; only for a deliberate change.
if (process.argv[2] === '--write') {
  const file = join(REPO, 'test', 'fixtures', 'resolved-configs.json');
  writeFileSync(file, `${JSON.stringify(resolvedConfigDigests(), null, 1)}\n`);
  process.stdout.write(`wrote ${file}\n`);
}
