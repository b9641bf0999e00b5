import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';
import { checkEvalSources, resolveDataRoot, SOURCE_SETTINGS } from './data-sources.js';
import { RunConfigError } from './merge.js';
import {
  checkLrMin,
  corpora,
  mathOptions,
  openMapping,
  optimizerFields,
  runMapping,
} from './schema/common-fields.js';
import { echo, int, mapping, nullable, num, section, setting, string } from './schema/field.js';
import { configError } from './schema/issues.js';
import { applySets } from './set-overrides.js';

/**
 * Everything `rmt pretrain` reads, as one schema with each field's default; a YAML file overrides
 * any subset, and nothing in the training code has a number of its own. docs/config.md and
 * configs/schema/pretrain.schema.json are generated from it (`npm run docs:config`).
 */

/** A fresh model's Hugging Face config.json fields; checked by parseModelConfig (shared/model/config.ts). */
const MODEL_CONFIG_DEFAULTS: Record<string, unknown> = {
  model_type: 'qwen3',
  hidden_size: 64,
  intermediate_size: 176,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 16,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
  max_position_embeddings: 512,
};

const optimizer = optimizerFields(
  { steps: 600, lr: 3e-3, lr_min: 3e-4, warmup_steps: 30, weight_decay: 0.1 },
  'optimizer updates',
);

export const pretrainSchema = mapping({
  run: section(
    runMapping(
      'runs/pretrain',
      'output folder: metrics, checkpoints, plots; a run resumes from its newest checkpoint',
      'seed of the initial weights, data split and batch order',
    ),
    'where the run goes and what computes it',
  ),
  tokenizer: section(
    mapping({
      dir: nullable(string({ nonEmpty: true }), {
        description: "an existing tokenizer folder (`tokenizer.json`); null derives one from GPT-2's merges",
      }),
      gpt2_merges: int(
        2000,
        { min: 0 },
        {
          description:
            'merges kept when deriving from GPT-2 (vocabulary = 256 bytes + merges + 3 special tokens)',
        },
      ),
    }),
    'the tokenizer of a fresh model',
  ),
  model: section(
    mapping({
      init_from: nullable(string({ nonEmpty: true }), {
        description: 'start from this checkpoint folder instead of fresh weights',
      }),
      config: setting(
        z
          .record(z.string(), z.unknown(), { error: (iss) => `expected a mapping, got ${echo(iss.input)}` })
          .transform((m) => openMapping(m, MODEL_CONFIG_DEFAULTS)),
        MODEL_CONFIG_DEFAULTS,
        {
          description:
            'Hugging Face `config.json` fields of a fresh model (`model_type`: `llama`, `qwen2` or `qwen3`), checked by `parseModelConfig` (`shared/model/config.ts`); `vocab_size` comes from the tokenizer; keys not given keep the defaults',
        },
      ),
      init_std: num(0.02, { above: 0 }, { description: 'standard deviation of the initial weights' }),
    }),
    'the model: a fresh one from `config`, or a checkpoint',
  ),
  data: section(
    mapping({
      corpora: corpora(['sotu', 'moby-dick', 'brown']),
      max_chars_per_corpus: int(
        400000,
        { min: 0 },
        {
          description: 'characters read per corpus (0 = all): bounds tokenisation time for small runs',
        },
      ),
      held_out_fraction: num(
        0.05,
        { above: 0, below: 1 },
        {
          description: 'share of documents held out for evaluation',
        },
      ),
      seq_len: int(
        64,
        { min: 1 },
        { description: 'tokens per training window; at most `max_position_embeddings`' },
      ),
      math: mathOptions({}),
      ...SOURCE_SETTINGS,
    }).superRefine(checkEvalSources),
    'the corpora',
  ),
  train: section(
    mapping({
      steps: optimizer.steps,
      batch_size: int(8, { min: 1 }, { description: 'windows per update' }),
      ...optimizer.rest,
    }).superRefine(checkLrMin),
    'the optimizer and the batch size',
  ),
  eval: section(
    mapping({
      every: int(100, { min: 1 }, { description: 'held-out loss every N updates (and at the end)' }),
      batches: int(8, { min: 1 }, { description: 'held-out batches scored at each evaluation' }),
    }),
    'held-out loss',
  ),
  checkpoint: section(
    mapping({
      every: int(200, { min: 1 }, { description: 'checkpoint every N updates' }),
      keep: int(
        2,
        { min: 1 },
        {
          description: 'newest step checkpoints kept (the final one is always kept)',
        },
      ),
    }),
    'checkpoints to resume from',
  ),
});

export type PretrainConfig = z.output<typeof pretrainSchema>;

export const PRETRAIN_DEFAULTS: PretrainConfig = pretrainSchema.parse({});

export function parsePretrainConfig(raw: unknown, source: string): PretrainConfig {
  const r = pretrainSchema.safeParse(raw ?? {});
  if (!r.success) throw configError(source, r.error);
  return r.data;
}

/** Reads a pre-training config; `sets` are `section.key=value` overrides (the CLI's `--set`). */
export function loadPretrainConfig(path: string, sets: readonly string[] = []): PretrainConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new RunConfigError(path, '(file)', `cannot read: ${(e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    throw new RunConfigError(path, '(yaml)', (e as Error).message);
  }
  return resolveDataRoot(parsePretrainConfig(applySets(raw, sets, path), path), path);
}
