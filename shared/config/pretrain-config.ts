import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { parseReportTo, type ReportTarget } from '../obs/run-metrics.js';
import { checkSourceSettings, resolveDataRoot, type SourceSettings } from './data-sources.js';
import { overlay, RunConfigError } from './merge.js';
import type { OptimizerSettings } from './optimizer-config.js';
import { checkOptimizer } from './ranges.js';
import { applySets } from './set-overrides.js';

/**
 * Everything `rmt pretrain` reads, with its default. A YAML file overrides any subset; nothing in
 * the training code has a number of its own.
 */
export interface PretrainConfig {
  run: {
    /** Output folder: metrics, checkpoints, plots. */
    out_dir: string;
    seed: number;
    /** Kernel backend: auto | webgpu | webasm | cpu | reference. */
    backend: string;
    /** On `webgpu`: matrix products in the tiled WGSL kernel (false: gpu.js's; docs/gpu.md). */
    webgpu_tiled_matmul: boolean;
    /** Where per-step metrics go: `jsonl` (metrics.jsonl, always written) and `tensorboard`. */
    report_to: ReportTarget[];
  };
  tokenizer: {
    /** An existing tokenizer folder (tokenizer.json); when null, one is derived from GPT-2's merges. */
    dir: string | null;
    /** Merges kept when deriving from GPT-2 (vocabulary = 256 bytes + merges + 3 special tokens). */
    gpt2_merges: number;
  };
  model: {
    /** Start from this checkpoint folder instead of fresh weights. */
    init_from: string | null;
    /** Hugging Face config.json fields of a fresh model; vocab_size comes from the tokenizer. */
    config: Record<string, unknown>;
    init_std: number;
  };
  /** `sources`, `eval_sources`, `root`, `max_document_bytes`: the user's corpora (data-sources.ts). */
  data: SourceSettings & {
    corpora: string[];
    /** Characters read per corpus (0 = all): bounds tokenisation time for small runs. */
    max_chars_per_corpus: number;
    held_out_fraction: number;
    seq_len: number;
    /** Options of the synthetic math corpus (see shared/data/synthetic-math.ts); {} = its defaults. */
    math: Record<string, unknown>;
  };
  train: OptimizerSettings & {
    batch_size: number;
  };
  eval: {
    every: number;
    /** Held-out windows scored at each evaluation. */
    batches: number;
  };
  checkpoint: {
    every: number;
    /** Keep the newest N step checkpoints (the final one is always kept). */
    keep: number;
  };
}

export const PRETRAIN_DEFAULTS: PretrainConfig = {
  run: {
    out_dir: 'runs/pretrain',
    seed: 1234,
    backend: 'auto',
    webgpu_tiled_matmul: true,
    report_to: ['jsonl'],
  },
  tokenizer: { dir: null, gpt2_merges: 2000 },
  model: {
    init_from: null,
    config: {
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
    },
    init_std: 0.02,
  },
  data: {
    corpora: ['sotu', 'moby-dick', 'brown'],
    max_chars_per_corpus: 400000,
    held_out_fraction: 0.05,
    seq_len: 64,
    math: {},
    sources: [],
    eval_sources: [],
    root: null,
    max_document_bytes: 64 * 1024 * 1024,
  },
  train: {
    steps: 600,
    batch_size: 8,
    lr: 3e-3,
    lr_min: 3e-4,
    warmup_steps: 30,
    beta1: 0.9,
    beta2: 0.95,
    eps: 1e-8,
    weight_decay: 0.1,
    max_grad_norm: 1.0,
  },
  eval: { every: 100, batches: 8 },
  checkpoint: { every: 200, keep: 2 },
};

export function parsePretrainConfig(raw: unknown, source: string): PretrainConfig {
  const c = overlay(PRETRAIN_DEFAULTS, raw ?? {}, source, new Set(['model.config', 'data.math']));
  const positive = (field: string, v: number) => {
    if (!(v > 0)) throw new RunConfigError(source, field, `must be > 0, got ${v}`);
  };
  positive('train.steps', c.train.steps);
  positive('train.batch_size', c.train.batch_size);
  checkOptimizer(source, c.train);
  positive('data.seq_len', c.data.seq_len);
  positive('eval.every', c.eval.every);
  positive('checkpoint.every', c.checkpoint.every);
  c.run.report_to = parseReportTo(c.run.report_to, (m) => {
    throw new RunConfigError(source, 'run.report_to', m);
  });
  checkSourceSettings(c.data, source);
  if (!(c.data.held_out_fraction > 0 && c.data.held_out_fraction < 1)) {
    throw new RunConfigError(
      source,
      'data.held_out_fraction',
      `must be in (0, 1), got ${c.data.held_out_fraction}`,
    );
  }
  return c;
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
