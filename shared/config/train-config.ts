import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { z } from 'zod';
import { didYouMean } from '../util/did-you-mean.js';
import { checkEvalSources, MAX_CONTEXT, resolveDataRoot, SOURCE_SETTINGS } from './data-sources.js';
import { RunConfigError } from './merge.js';
import { METHODS } from './rmt-defaults.js';
import { checkLrMin, corpora, mathOptions, optimizerFields, runMapping } from './schema/common-fields.js';
import {
  echo,
  int,
  mapping,
  nullable,
  num,
  number,
  oneOf,
  section,
  setting,
  str,
  string,
} from './schema/field.js';
import { configError } from './schema/issues.js';
import { METHOD_SECTIONS } from './schema/method-sections.js';
import { applySets } from './set-overrides.js';

/**
 * Everything `rmt train`, `rmt eval` and the coordinator's StartRun read, as one schema: each
 * field's type, range, default, where the default comes from and what it means. docs/config.md and
 * configs/schema/train.schema.json are generated from it (`npm run docs:config`). The method's
 * sections (budget, reward, prompt, curriculum, grpo, loss) are in schema/method-sections.ts; budget
 * and hard cap take the small-model values since the runs here are small models.
 */

const optimizer = optimizerFields(
  { steps: 100, lr: 1e-4, lr_min: 1e-5, warmup_steps: 5, weight_decay: 0.0 },
  '`T`: updates, and the length of the budget and tier-mix schedules',
);

const methodField = setting(
  z.enum(METHODS, {
    error: (iss) =>
      `unknown method ${echo(iss.input)}${typeof iss.input === 'string' ? didYouMean(iss.input, METHODS) : ''} (one of ${METHODS.join(', ')})`,
  }),
  'rmt',
  {
    description: 'the method row of `docs/method.md` section 6: what is trained and how it is evaluated',
  },
);

export const trainSchema = mapping({
  method: methodField,
  run: section(
    runMapping(
      'runs/rmt',
      'output folder: `metrics.jsonl`, checkpoints, `eval.json`, plots',
      'seed of sampling, rollouts and the data split',
    ),
    'where the run goes and what computes it',
  ),
  model: section(
    mapping({
      init_from: str('', {
        description:
          'checkpoint folder of the starting (pre-trained) model and its tokenizer; required (`rmt pretrain` makes one)',
      }),
      proxy: nullable(string({ nonEmpty: true }), {
        description:
          'checkpoint of the entropy proxy; null = `model.init_from` (the base model, as docs/method.md section 4 says)',
      }),
    }),
    'the policy to train and the entropy proxy',
  ),
  data: section(
    mapping({
      corpora: corpora(['sotu', 'moby-dick', 'brown']),
      max_chars_per_corpus: int(
        200000,
        { min: 0 },
        {
          description: 'characters read per corpus (0 = all): bounds tokenisation time',
        },
      ),
      rl_tokens: int(
        20000,
        { min: 1 },
        {
          description: 'tokens of the training stream scored by the proxy; key positions come from these',
        },
      ),
      eval_tokens: int(
        10000,
        { min: 1 },
        { description: 'tokens of the held-out stream scored for evaluation' },
      ),
      held_out_fraction: num(0.05, { above: 0, below: 1 }, { description: 'share of documents held out' }),
      context_len: int(
        32,
        { min: 1 },
        {
          description: "tokens of context before a key position (the prompt's text)",
        },
      ),
      continuation_len: int(
        8,
        { min: 1 },
        {
          description: 'ground-truth tokens from the key position on (byte-prefix reward, NTP window)',
        },
      ),
      score_window: int(
        64,
        { min: 2 },
        {
          description: "window of the proxy's scoring pass (windows overlap by half)",
        },
      ),
      positions: oneOf(['all', 'answers'], 'all', {
        description:
          "which tokens can be key positions: `all` (any scored token, the paper's setting) or `answers` (the answer digits of the synthetic math corpus: the positions where reasoning can pay)",
      }),
      math: mathOptions({ reasoning_fraction: 0 }),
      ...SOURCE_SETTINGS,
      max_context: MAX_CONTEXT,
    }).superRefine(checkEvalSources),
    'the corpora key positions come from, and the context of a key position',
  ),
  ...METHOD_SECTIONS,
  train: section(
    mapping({
      steps: optimizer.steps,
      positions_per_step: int(
        8,
        { min: 1 },
        { description: 'key positions per step (each gets G rollouts)' },
      ),
      ...optimizer.rest,
      micro_batch: int(16, { min: 1 }, { description: 'sequences per forward/backward in the learner' }),
      generation_batch: int(
        64,
        { min: 1 },
        {
          description: 'sequences decoded together in one KV-cache batch',
          rule: 'at least grpo.G',
        },
      ),
    }).superRefine(checkLrMin),
    'the optimizer and the batch sizes',
  ),
  eval: section(
    mapping({
      every: int(0, { min: 0 }, { description: 'evaluate every N steps (0 = only at the end)' }),
      positions: int(
        200,
        { min: 1 },
        {
          description: 'held-out positions per evaluation (an evenly spaced fixed subset)',
        },
      ),
      budget: nullable(number({ int: true, min: 1 }), {
        description:
          "budget stated in `ntr` evaluation; null: the method's own prompt at t = T (B_T for methods with the dynamic budget, no budget for the others); a number: that budget for every method",
      }),
      ntp_over: oneOf(['text', 'vocab'], 'text', {
        description:
          'what `ntp` evaluation takes the argmax over: `text` (every token but `<think>` and `</think>`, the reasoning layout, never the next token of held-out text) or `vocab` (the whole vocabulary)',
      }),
      match: oneOf(['token', 'byte-prefix'], 'token', {
        description:
          "how a prediction is scored in the reported splits: `token` (the exact next token, RMT's match reward) or `byte-prefix` (RPT's reward); every result also holds both under `by_match`",
      }),
    }),
    'held-out evaluation during and after training',
  ),
  checkpoint: section(
    mapping({
      every: int(50, { min: 1 }, { description: 'checkpoint every N steps' }),
      keep: int(
        2,
        { min: 1 },
        { description: 'newest step checkpoints kept (the final one is always kept)' },
      ),
    }),
    'checkpoints to resume from',
  ),
  distributed: section(
    mapping({
      max_staleness: int(
        0,
        { min: 0 },
        {
          description:
            'rollouts of step t may come from weights as old as version t - max_staleness; 0 keeps the run on-policy and identical to `rmt train`',
        },
      ),
      job_timeout_s: int(
        600,
        { min: 1 },
        {
          description: 'a rollout job not finished in this time is taken back and given to another worker',
        },
      ),
      observation_timeout_s: num(
        30,
        { min: 0 },
        {
          description:
            'how long a step waits for its difficulty observations on the bus before using its own copy',
        },
      ),
      worker_wait_s: num(
        120,
        { min: 0 },
        {
          description: 'how long a step waits for a first rollout worker to appear before the run fails',
        },
      ),
    }),
    'how the coordinator drives rollout workers and the learner (embedded or as services)',
  ),
}).superRefine((c, ctx) => {
  if (c.train.generation_batch < c.grpo.G) {
    ctx.addIssue({
      code: 'custom',
      path: ['train', 'generation_batch'],
      message: `must hold at least one group (grpo.G = ${c.grpo.G})`,
    });
  }
});

export type TrainConfig = z.output<typeof trainSchema>;

export const TRAIN_DEFAULTS: TrainConfig = trainSchema.parse({});

export function parseTrainConfig(raw: unknown, source: string): TrainConfig {
  const r = trainSchema.safeParse(raw ?? {});
  if (!r.success) throw configError(source, r.error);
  return r.data;
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
