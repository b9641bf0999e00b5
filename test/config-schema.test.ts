import test from 'ava';
import type { z } from 'zod';
import { RunConfigError } from '../shared/config/merge.js';
import { PRETRAIN_DEFAULTS, parsePretrainConfig, pretrainSchema } from '../shared/config/pretrain-config.js';
import { RMT_DEFAULTS } from '../shared/config/rmt-defaults.js';
import { FIELDS } from '../shared/config/schema/field.js';
import { sectionsOf } from '../shared/config/schema/walk.js';
import {
  parseTrainConfig,
  TRAIN_DEFAULTS,
  type TrainConfig,
  trainSchema,
} from '../shared/config/train-config.js';

/**
 * The run configs' one schema: every field has a default with its source and a description, every
 * error names the dotted field, integers are integers in both configs, enums are enums.
 */

// Compile-time: the config's enums are literal unions, not strings to cast.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const typed: [
  Equal<TrainConfig['run']['backend'], 'auto' | 'webgpu' | 'webasm' | 'cpu' | 'reference'>,
  Equal<TrainConfig['data']['positions'], 'all' | 'answers'>,
  Equal<TrainConfig['method'], 'ntp' | 'ntr' | 'rpt' | 'rmt' | 'rmt-no-dtb' | 'rmt-no-cas' | 'rmt-no-ntp'>,
  Equal<TrainConfig['eval']['budget'], number | null>,
] = [true, true, true, true];

const refused = (
  parse: (raw: unknown, s: string) => unknown,
  raw: unknown,
  field: string,
  reason: RegExp,
) => {
  try {
    parse(raw, 'x.yaml');
  } catch (e) {
    if (!(e instanceof RunConfigError)) throw e;
    return e.field === field && reason.test(e.reason) ? null : `${e.field}: ${e.reason}`;
  }
  return 'accepted';
};

test('every error names the dotted field and what was expected', (t) => {
  t.deepEqual(typed, [true, true, true, true]);
  const cases: [typeof parseTrainConfig | typeof parsePretrainConfig, unknown, string, RegExp][] = [
    [parsePretrainConfig, { train: { steps: 2.5 } }, 'train.steps', /^must be an integer >= 1, got 2\.5$/],
    [parseTrainConfig, { train: { steps: 2.5 } }, 'train.steps', /^must be an integer >= 1, got 2\.5$/],
    [parsePretrainConfig, { data: { seq_len: 8.5 } }, 'data.seq_len', /integer/],
    [parsePretrainConfig, { eval: { every: 0 } }, 'eval.every', /integer >= 1/],
    [parseTrainConfig, { train: { stpes: 1 } }, 'train.stpes', /unknown setting \(did you mean "steps"\?\)/],
    [parseTrainConfig, { trian: {} }, 'trian', /unknown setting \(did you mean "train"\?\)/],
    [parseTrainConfig, { train: 3 }, 'train', /expected a mapping, got 3/],
    [parseTrainConfig, { method: 'rmtt' }, 'method', /unknown method "rmtt" \(did you mean "rmt"\?\)/],
    [parseTrainConfig, { data: { positions: 'answer' } }, 'data.positions', /did you mean "answers"/],
    [
      parseTrainConfig,
      { run: { backend: 'gpu' } },
      'run.backend',
      /one of auto, webgpu, webasm, cpu, reference/,
    ],
    [parseTrainConfig, { eval: { budget: 'x' } }, 'eval.budget', /expected a number, got "x" \(or null\)/],
    [parseTrainConfig, { model: { proxy: 5 } }, 'model.proxy', /expected a string, got 5/],
    [parseTrainConfig, { curriculum: { p1: [0.5, 0.5] } }, 'curriculum.p1', /list of 3 numbers/],
    [parseTrainConfig, { curriculum: { p2: [0.5, 0.5, 0.5] } }, 'curriculum.p2', /must sum to 1, got 1\.5/],
    [parseTrainConfig, { train: { lr: 1e-3, lr_min: 1e-2 } }, 'train.lr_min', /<= 0\.001, got 0\.01/],
    [parseTrainConfig, { budget: { B_0: 10, B_min: 20 } }, 'budget.B_min', /<= 10, got 20/],
    [parseTrainConfig, { train: { generation_batch: 4 } }, 'train.generation_batch', /grpo\.G = 8/],
    [
      parseTrainConfig,
      { data: { math: { reasoning_fractio: 1 } } },
      'data.math.reasoning_fractio',
      /did you mean "reasoning_fraction"/,
    ],
    [
      parsePretrainConfig,
      { data: { math: { documnets: 1 } } },
      'data.math.documnets',
      /did you mean "documents"/,
    ],
    [parseTrainConfig, { data: { corpora: ['sotuu'] } }, 'data.corpora[0]', /did you mean "sotu"/],
    [parseTrainConfig, { data: { corpora: [] } }, 'data.corpora', /empty/],
    [
      parseTrainConfig,
      { data: { sources: [{ path: 'a.jsonl', weight: -1 }] } },
      'data.sources[0].weight',
      /positive/,
    ],
    [
      parseTrainConfig,
      { run: { report_to: ['jsonl', 'wandb'] } },
      'run.report_to[1]',
      /unknown target "wandb"/,
    ],
    [parsePretrainConfig, { model: { config: [] } }, 'model.config', /expected a mapping/],
    [parseTrainConfig, 'text', '(root)', /expected a mapping/],
  ];
  for (const [parse, raw, field, reason] of cases)
    t.is(refused(parse, raw, field, reason), null, JSON.stringify(raw));
});

test('every setting has a description and a default source; the paper values are recorded', (t) => {
  for (const schema of [trainSchema, pretrainSchema]) {
    for (const s of sectionsOf(schema as unknown as z.ZodType)) {
      for (const f of s.fields) {
        t.true(f.meta.description.length > 10, f.path);
        t.true(['paper', 'RPT', 'verl', 'DAPO', 'ours'].includes(f.meta.source), f.path);
      }
    }
  }
  // The train config's budget is the small-model one; RMT_DEFAULTS keeps the paper's.
  t.deepEqual([TRAIN_DEFAULTS.budget.B_0, TRAIN_DEFAULTS.budget.hard_cap], [64, 256]);
  t.deepEqual([RMT_DEFAULTS.budget.B_0, RMT_DEFAULTS.budget.hard_cap], [800, 2048]);
  t.deepEqual(RMT_DEFAULTS.small_model, { B_0: 64, hard_cap: 256 });
  const b0 = (trainSchema.shape.budget.unwrap() as unknown as { shape: Record<string, z.ZodType> }).shape.B_0;
  t.like(FIELDS.get(b0), { source: 'ours', paper: 800 });
});

test('defaults are fresh on every parse: changing one resolved config changes no other', (t) => {
  const a = parseTrainConfig({}, 'a');
  a.data.corpora.push('math');
  a.curriculum.p1[0] = 0;
  const b = parseTrainConfig({}, 'b');
  t.deepEqual(b.data.corpora, ['sotu', 'moby-dick', 'brown']);
  t.is(b.curriculum.p1[0], 0.6);
  t.deepEqual(TRAIN_DEFAULTS.data.corpora, ['sotu', 'moby-dick', 'brown']);
  t.is(PRETRAIN_DEFAULTS.train.steps, 600);
  // A resolved config is a fixed point: services parse the JSON they are sent again.
  const c = parseTrainConfig({ data: { sources: [{ path: 'a.jsonl' }], math: { documents: 5 } } }, 'c');
  t.deepEqual(parseTrainConfig(JSON.parse(JSON.stringify(c)), 'again'), c);
  const p = parsePretrainConfig({ model: { config: { hidden_size: 32 } } }, 'p');
  t.deepEqual(parsePretrainConfig(JSON.parse(JSON.stringify(p)), 'again'), p);
});
