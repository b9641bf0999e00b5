import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { parseReportTo, type ReportTarget } from '../obs/run-metrics.js';
import { promptConfigProblem } from '../rl/prompt-format.js';
import { didYouMean } from '../util/did-you-mean.js';
import { checkDataSettings, type DataSettings, resolveDataRoot } from './data-sources.js';
import { overlay, RunConfigError } from './merge.js';
import type { OptimizerSettings } from './optimizer-config.js';
import { METHOD_TABLE, type Method, RMT_DEFAULTS, type RmtDefaults } from './rmt-defaults.js';
import { applySets } from './set-overrides.js';
import { checkTrainRanges } from './train-ranges.js';

/**
 * Everything `rmt train` and `rmt eval` read. The algorithm's sections (budget, reward, prompt,
 * curriculum, grpo, loss) are the method's defaults (docs/method.md) from `rmt-defaults.ts`; budget and hard cap take
 * the method's small-model values since the runs here are small models.
 */
export interface TrainConfig extends Omit<RmtDefaults, 'small_model'> {
  method: Method;
  run: {
    out_dir: string;
    seed: number;
    backend: string;
    /** On `webgpu`: matrix products in the tiled WGSL kernel (false: gpu.js's; docs/gpu.md). */
    webgpu_tiled_matmul: boolean;
    /** Where per-step metrics go: `jsonl` (metrics.jsonl, always written) and `tensorboard`. */
    report_to: ReportTarget[];
  };
  model: {
    /** Checkpoint folder of the starting (pre-trained) model and its tokenizer; required. */
    init_from: string;
    /** Checkpoint of the entropy proxy; null = init_from (the base model, as docs/method.md section 4 says). */
    proxy: string | null;
  };
  /** `sources`, `eval_sources`, `root`, `max_document_bytes`, `max_context`: data-sources.ts. */
  data: DataSettings & {
    corpora: string[];
    max_chars_per_corpus: number;
    /** Tokens of the training stream scored by the proxy; key positions come from these. */
    rl_tokens: number;
    /** Tokens of the held-out stream scored for evaluation. */
    eval_tokens: number;
    held_out_fraction: number;
    /** Tokens of context before a key position (the prompt's text). */
    context_len: number;
    /** Ground-truth tokens from the key position on (byte-prefix reward, NTP window). */
    continuation_len: number;
    /** Window of the proxy's scoring pass. */
    score_window: number;
    /**
     * Which tokens can be key positions: `all` (any scored token, the paper's setting) or `answers`
     * (the answer digits of the synthetic math corpus: the positions where reasoning can pay).
     */
    positions: string;
    /** Options of the synthetic math corpus (see shared/data/synthetic-math.ts); {} = its defaults. */
    math: Record<string, unknown>;
  };
  /** `steps` is T: the budget and tier-mix schedules run over it too. */
  train: OptimizerSettings & {
    /** Key positions per step (each gets G rollouts). */
    positions_per_step: number;
    /** Sequences per forward/backward in the learner. */
    micro_batch: number;
    /** Sequences decoded together in one KV-cache batch. */
    generation_batch: number;
  };
  eval: {
    /** Evaluate every N steps (0 = only at the end). */
    every: number;
    /** Held-out positions per evaluation. */
    positions: number;
    /**
     * Budget stated in `ntr` evaluation. null: the method's own prompt at t = T (B_T for methods
     * with the dynamic budget, no budget for the others); a number: that budget for every method.
     */
    budget: number | null;
    /**
     * What `ntp` evaluation takes the argmax over. `text` (default): every token but `<think>` and
     * `</think>`, which are the reasoning layout and never the next token of held-out text; a base
     * pre-trained on that layout puts mass on `<think>` where it would rather reason, and an argmax
     * over them counts that as a wrong answer. `vocab`: the whole vocabulary.
     */
    ntp_over: 'text' | 'vocab';
    /**
     * How a prediction is scored: `token` (default), the exact next token (RMT's match reward);
     * `byte-prefix`, RPT's reward (the prediction's bytes a token-aligned prefix of the continuation).
     * Evaluations report both; this picks the one their easy / medium / hard / avg are.
     */
    match: 'token' | 'byte-prefix';
  };
  checkpoint: { every: number; keep: number };
  /** How the coordinator drives rollout workers and the learner (embedded or as services). */
  distributed: {
    /**
     * Staleness bound: rollouts of step t may come from weights as old as version t - max_staleness.
     * 0 keeps the run on-policy and identical to the embedded one.
     */
    max_staleness: number;
    /** A rollout job not finished in this time is taken back and given to another worker. */
    job_timeout_s: number;
    /** How long a step waits for its difficulty observations on the bus before using its own copy. */
    observation_timeout_s: number;
    /** How long a step waits for a first rollout worker to appear before the run fails. */
    worker_wait_s: number;
  };
}

export const TRAIN_DEFAULTS: TrainConfig = {
  method: 'rmt',
  run: { out_dir: 'runs/rmt', seed: 1234, backend: 'auto', webgpu_tiled_matmul: true, report_to: ['jsonl'] },
  model: { init_from: '', proxy: null },
  data: {
    corpora: ['sotu', 'moby-dick', 'brown'],
    max_chars_per_corpus: 200000,
    rl_tokens: 20000,
    eval_tokens: 10000,
    held_out_fraction: 0.05,
    context_len: 32,
    continuation_len: 8,
    score_window: 64,
    positions: 'all',
    math: { reasoningFraction: 0 },
    sources: [],
    eval_sources: [],
    root: null,
    max_document_bytes: 64 * 1024 * 1024,
    max_context: null,
  },
  budget: {
    ...RMT_DEFAULTS.budget,
    B_0: RMT_DEFAULTS.small_model.B_0,
    hard_cap: RMT_DEFAULTS.small_model.hard_cap,
  },
  reward: RMT_DEFAULTS.reward,
  prompt: RMT_DEFAULTS.prompt,
  curriculum: RMT_DEFAULTS.curriculum,
  grpo: RMT_DEFAULTS.grpo,
  loss: RMT_DEFAULTS.loss,
  train: {
    steps: 100,
    positions_per_step: 8,
    lr: 1e-4,
    lr_min: 1e-5,
    warmup_steps: 5,
    beta1: 0.9,
    beta2: 0.95,
    eps: 1e-8,
    weight_decay: 0.0,
    max_grad_norm: 1.0,
    micro_batch: 16,
    generation_batch: 64,
  },
  eval: { every: 0, positions: 200, budget: null, ntp_over: 'text', match: 'token' },
  checkpoint: { every: 50, keep: 2 },
  distributed: { max_staleness: 0, job_timeout_s: 600, observation_timeout_s: 30, worker_wait_s: 120 },
};

export function parseTrainConfig(raw: unknown, source: string): TrainConfig {
  const c = overlay(TRAIN_DEFAULTS, raw ?? {}, source, new Set(['data.math']));
  if (!(c.method in METHOD_TABLE)) {
    throw new RunConfigError(
      source,
      'method',
      `unknown method "${c.method}"${didYouMean(String(c.method), Object.keys(METHOD_TABLE))} (one of ${Object.keys(METHOD_TABLE).join(', ')})`,
    );
  }
  for (const [field, v] of [
    ['train.steps', c.train.steps],
    ['train.positions_per_step', c.train.positions_per_step],
    ['train.micro_batch', c.train.micro_batch],
    ['grpo.G', c.grpo.G],
    ['budget.hard_cap', c.budget.hard_cap],
    ['data.context_len', c.data.context_len],
    ['distributed.job_timeout_s', c.distributed.job_timeout_s],
  ] as const) {
    if (!(Number.isInteger(v) && v > 0))
      throw new RunConfigError(source, field, `must be a positive integer, got ${v}`);
  }
  if (!(Number.isInteger(c.distributed.max_staleness) && c.distributed.max_staleness >= 0)) {
    throw new RunConfigError(
      source,
      'distributed.max_staleness',
      `must be a non-negative integer, got ${c.distributed.max_staleness}`,
    );
  }
  checkDataSettings(c.data, source);
  if (c.data.positions !== 'all' && c.data.positions !== 'answers') {
    throw new RunConfigError(
      source,
      'data.positions',
      `must be "all" or "answers", got "${c.data.positions}"`,
    );
  }
  c.run.report_to = parseReportTo(c.run.report_to, (m) => {
    throw new RunConfigError(source, 'run.report_to', m);
  });
  if (c.eval.match !== 'token' && c.eval.match !== 'byte-prefix') {
    throw new RunConfigError(source, 'eval.match', `must be "token" or "byte-prefix", got "${c.eval.match}"`);
  }
  if (c.eval.ntp_over !== 'text' && c.eval.ntp_over !== 'vocab') {
    throw new RunConfigError(source, 'eval.ntp_over', `must be "text" or "vocab", got "${c.eval.ntp_over}"`);
  }
  const prompt = promptConfigProblem(c.prompt);
  if (prompt) throw new RunConfigError(source, prompt.field, prompt.reason);
  checkTrainRanges(c, source);
  if (c.train.generation_batch < c.grpo.G) {
    throw new RunConfigError(
      source,
      'train.generation_batch',
      `must hold at least one group (grpo.G = ${c.grpo.G})`,
    );
  }
  return c;
}

/** Reads a run config; `sets` are `section.key=value` overrides (the CLI's `--set`), checked alike. */
export function loadTrainConfig(path: string, sets: readonly string[] = []): TrainConfig {
  let raw: unknown;
  try {
    raw = parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new RunConfigError(path, '(file)', (e as Error).message);
  }
  return resolveDataRoot(parseTrainConfig(applySets(raw, sets, path), path), path);
}
