/**
 * Every default the method (`docs/method.md`) gives for the model-independent parts
 * of RMT: budget schedule, rewards, prompt layout, curriculum, GRPO. Field names are docs/method.md's
 * names (`B_0`, `B_min`, `r_max`, `w`, `p1`, `eps_low`, ...), so a YAML config, the code and the
 * paper read the same. Each field says where its value comes from: *paper* (RMT, Tian et al. 2025,
 * arXiv 2509.24375), *RPT* (Dong et al. 2025, arXiv 2506.08007), *verl* / *DAPO* (the convention we
 * match), or *ours* (this project's choice where the papers are silent).
 *
 * The functions in `shared/rl/` and `shared/curriculum/` take these sections as their parameter
 * objects, so no number lives in code.
 */

import type { z } from 'zod';
import { FIELDS } from './schema/field.js';
import {
  type budgetMapping,
  type curriculumMapping,
  type grpoMapping,
  type lossMapping,
  METHOD_SECTIONS,
  methodSectionsSchema,
  type promptMapping,
  type rewardMapping,
} from './schema/method-sections.js';

// The types of the method's sections come from their schema (schema/method-sections.ts); the
// narrower parameter types are the parts a function of shared/rl or shared/curriculum reads.
export type BudgetConfig = z.output<typeof budgetMapping>;
export type BudgetParams = Pick<BudgetConfig, 'B_0' | 'B_min' | 'gamma'>;
export type RewardConfig = z.output<typeof rewardMapping>;
export type LengthRewardParams = Pick<RewardConfig, 'r_max'>;
export type PromptConfig = z.output<typeof promptMapping>;
export type CurriculumConfig = z.output<typeof curriculumMapping>;
export type TierProbs = [easy: number, medium: number, hard: number];
export type TierMixParams = Pick<CurriculumConfig, 'p1' | 'p2' | 't1_frac' | 't2_frac'>;
export type TierEdges = Pick<CurriculumConfig, 'edges'>;
export type AdaptiveDifficultyParams = Pick<
  CurriculumConfig,
  'adaptive' | 'ema_alpha' | 'blend' | 'failure_scale'
>;
export type GrpoConfig = z.output<typeof grpoMapping>;
export type ClipParams = Pick<GrpoConfig, 'eps_low' | 'eps_high' | 'beta'>;
export type LossConfig = z.output<typeof lossMapping>;

export interface RmtDefaults {
  budget: BudgetConfig;
  /** Budget and cap for the small models this project trains (replace B_0 and hard_cap). */
  small_model: { B_0: number; hard_cap: number };
  reward: RewardConfig;
  prompt: PromptConfig;
  curriculum: CurriculumConfig;
  grpo: GrpoConfig;
  loss: LossConfig;
}

/** A section's defaults with the paper's value wherever the schema records one (FieldMeta.paper). */
function paperValues<T extends Record<string, unknown>>(name: keyof typeof METHOD_SECTIONS, values: T): T {
  const inner = METHOD_SECTIONS[name].unwrap() as unknown as { shape: Record<string, z.ZodType> };
  const out: Record<string, unknown> = { ...values };
  for (const [key, schema] of Object.entries(inner.shape)) {
    const paper = FIELDS.get(schema)?.paper;
    if (paper !== undefined) out[key] = paper;
  }
  return out as T;
}

const OURS = methodSectionsSchema.parse({});

/**
 * Every default the method gives for the model-independent parts of RMT, the paper's values: the
 * train config's defaults (TRAIN_DEFAULTS) take `small_model`'s budget and cap instead, since the
 * runs here are small models. Each value's source is in the schema (schema/method-sections.ts).
 */
export const RMT_DEFAULTS: RmtDefaults = {
  budget: paperValues('budget', OURS.budget),
  small_model: { B_0: OURS.budget.B_0, hard_cap: OURS.budget.hard_cap },
  reward: OURS.reward,
  prompt: OURS.prompt,
  curriculum: OURS.curriculum,
  grpo: OURS.grpo,
  loss: OURS.loss,
};

/** The seven runs of docs/method.md section 6: one config each. */
export const METHODS = ['ntp', 'ntr', 'rpt', 'rmt', 'rmt-no-dtb', 'rmt-no-cas', 'rmt-no-ntp'] as const;
export type Method = (typeof METHODS)[number];

export type RewardKind = 'byte-prefix' | 'match+length' | 'match';

export interface MethodSpec {
  /** `no`: argmax next token; `untrained`: next-token reasoning with the base model; `yes`: trained. */
  reasoning: 'no' | 'untrained' | 'yes';
  /** `dtb`: B_t schedule; `fixed`: the hard cap throughout; `none`: no RL. */
  budget: 'dtb' | 'fixed' | 'none';
  /** `cas`: tier mix; `uniform`: uniform over filtered positions; `filter`: RPT's threshold only. */
  curriculum: 'cas' | 'uniform' | 'filter' | 'none';
  /** Add lambda * NTP cross-entropy on the non-key tokens. */
  ntp_loss: boolean;
  reward: RewardKind | 'none';
}

/** Section 6 of docs/method.md, row by row. */
export const METHOD_TABLE: Readonly<Record<Method, MethodSpec>> = {
  ntp: { reasoning: 'no', budget: 'none', curriculum: 'none', ntp_loss: false, reward: 'none' },
  ntr: { reasoning: 'untrained', budget: 'none', curriculum: 'none', ntp_loss: false, reward: 'none' },
  rpt: { reasoning: 'yes', budget: 'fixed', curriculum: 'filter', ntp_loss: false, reward: 'byte-prefix' },
  rmt: { reasoning: 'yes', budget: 'dtb', curriculum: 'cas', ntp_loss: true, reward: 'match+length' },
  'rmt-no-dtb': { reasoning: 'yes', budget: 'fixed', curriculum: 'cas', ntp_loss: true, reward: 'match' },
  'rmt-no-cas': {
    reasoning: 'yes',
    budget: 'dtb',
    curriculum: 'uniform',
    ntp_loss: true,
    reward: 'match+length',
  },
  'rmt-no-ntp': {
    reasoning: 'yes',
    budget: 'dtb',
    curriculum: 'cas',
    ntp_loss: false,
    reward: 'match+length',
  },
};
