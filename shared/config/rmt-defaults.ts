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

export interface BudgetParams {
  /** Initial reasoning budget B_0 in tokens. */
  B_0: number;
  /** Floor of the budget. */
  B_min: number;
  /** Fraction of B_0 left at t = T (before the floor): B_t = B_0 * gamma^(t/T). */
  gamma: number;
}

export interface BudgetConfig extends BudgetParams {
  /** Hard cap on response length (tokens); generation is cut here and the rollout marked `length`. */
  hard_cap: number;
  /** Hard cap of the post-training check (math GRPO). */
  post_training_hard_cap: number;
}

export interface LengthRewardParams {
  /** Peak of the triangular length reward, reached at l = B_t. */
  r_max: number;
}

export interface RewardConfig extends LengthRewardParams {
  /** Weight of the length reward in r = (1 - w) r_match + w r_len. */
  w: number;
  /**
   * Pay r_len only to rollouts that finished with an answer (`finish_reason = stop`). Otherwise a
   * rollout that never closes `</think>` (or answers nothing) would still earn w * r_len.
   */
  length_reward_requires_answer: boolean;
}

export interface PromptConfig {
  /**
   * `bare` for small models trained by this project, `rpt-v0` for instruction-following models
   * (RPT's template as plain text), `chat` for models with a chat template (the RPT instruction as
   * the user turn of the model's own template from tokenizer_config.json or chat_template.jinja).
   */
  template: 'bare' | 'rpt-v0' | 'chat';
  /** Text after `<think>` that states the budget in the bare layout; `{B}` becomes the number. */
  budget_marker: string;
  /** RPT template v0; `{context}` is the decoded context, `{budget_sentence}` the sentence below or ''. */
  rpt_template: string;
  /** The budget sentence of RMT; `{B}` becomes the number. */
  rpt_budget_sentence: string;
  /**
   * Tokens (strings such as `<|im_end|>`, or ids) that end a response. Empty: the checkpoint's
   * generation_config.json `eos_token_id` (one id or a list), else the tokenizer's eos token.
   */
  stop_tokens: (string | number)[];
}

export type TierProbs = [easy: number, medium: number, hard: number];

export interface TierMixParams {
  /** Tier mix (easy, medium, hard) before t1. */
  p1: TierProbs;
  /** Tier mix after t2. */
  p2: TierProbs;
  /** t1 = t1_frac * T: end of the easy-heavy phase. */
  t1_frac: number;
  /** t2 = t2_frac * T: the mix reaches p2. */
  t2_frac: number;
}

export interface TierEdges {
  /** Entropy (nats) above which a position is medium (easy <= edges[0] < medium <= edges[1] < hard). */
  edges: [easyMax: number, mediumMax: number];
}

export interface AdaptiveDifficultyParams {
  /** Blend rollout outcomes into difficulty; with false the schedule is the paper's, step-based only. */
  adaptive: boolean;
  /** EMA weight of the newest observation of (1 - accuracy). */
  ema_alpha: number;
  /** Weight of the failure term in difficulty = (1 - blend) * entropy + blend * failure_scale * ema. */
  blend: number;
  /** Nats that a position failed every time counts as (ln k: the largest top-k entropy). */
  failure_scale: number;
}

export interface CurriculumConfig extends TierMixParams, TierEdges, AdaptiveDifficultyParams {
  /** Proxy candidates the entropy is computed over (renormalised). */
  k: number;
  /** RL-eligible positions have entropy above this (the filter of RPT and of `rmt-no-cas`). */
  min_entropy: number;
  /** RPT's nested evaluation splits: easy > 0.5, medium > 1.0, hard > 1.5 nats. */
  eval_splits: [easy: number, medium: number, hard: number];
}

export interface ClipParams {
  /** Lower clip of the ratio: rho >= 1 - eps_low. */
  eps_low: number;
  /** Upper clip of the ratio: rho <= 1 + eps_high. */
  eps_high: number;
  /** Weight of the k3 KL to a reference policy; 0 switches it off. */
  beta: number;
}

export interface GrpoConfig extends ClipParams {
  /** Rollouts per key position. */
  G: number;
  /** Sampling temperature of rollouts. */
  temperature: number;
  /** Added to the group std in the advantage denominator. */
  adv_eps: number;
  /** Replace zero-variance groups by fresh ones (DAPO). */
  dynamic_sampling: boolean;
  /** Most replacement groups drawn per batch before giving up (a smaller batch then). */
  max_replacement_draws: number;
}

export interface LossConfig {
  /** Weight of the NTP loss: L = L_RL + lambda * L_NTP. */
  lambda: number;
}

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

export const RMT_DEFAULTS: RmtDefaults = {
  budget: {
    B_0: 800, // paper
    B_min: 1, // paper
    gamma: 0.2, // paper
    hard_cap: 2048, // paper (mid-training)
    post_training_hard_cap: 4096, // paper
  },
  small_model: {
    B_0: 64, // ours: scaled down with the models
    hard_cap: 256, // ours
  },
  reward: {
    r_max: 1, // ours (the paper's triangle has no stated peak)
    w: 0.2, // ours (the paper does not give w)
    length_reward_requires_answer: true, // ours: see RewardConfig
  },
  prompt: {
    template: 'bare', // ours: small models
    budget_marker: ' budget {B}:', // ours: readable, digits are single tokens, ':' ends the number
    // RPT's template v0 (RPT appendix, Table 10) verbatim, with the budget sentence of RMT at the end
    // of the instruction (ours: where it goes) and the context after "### Context ".
    rpt_template:
      "Complete the given text under '### Context' by predicting the next token, and wrap it in " +
      "'\\boxed{}'. Please reason step by step to find the most probable next token as the final " +
      'answer, and enclose it in \\boxed{} (note: the token may begin with a space, e.g., ' +
      '\\boxed{ para} or \\boxed{ =}; do not use \\text{}).{budget_sentence}\n\n### Context {context}',
    rpt_budget_sentence: ' Please use exactly {B} tokens within <think></think>.', // paper
    stop_tokens: [], // ours: the checkpoint's generation_config.json, as transformers' generate
  },
  curriculum: {
    k: 16, // RPT
    min_entropy: 0.5, // ours: RPT's lowest evaluation split as the RL filter
    edges: [1.0, 1.5], // ours: disjoint bins between RPT's nested splits
    eval_splits: [0.5, 1.0, 1.5], // RPT
    p1: [0.6, 0.3, 0.1], // ours
    p2: [0.1, 0.3, 0.6], // ours
    t1_frac: 0.3, // paper
    t2_frac: 0.7, // paper
    adaptive: false, // ours: off = the paper's step-based schedule
    ema_alpha: 0.3, // ours
    blend: 0.5, // ours
    failure_scale: Math.log(16), // ours: ln k, the largest top-16 entropy
  },
  grpo: {
    G: 8, // paper
    temperature: 0.8, // paper
    eps_low: 0.2, // paper
    eps_high: 0.2, // paper
    beta: 0, // paper (KL off)
    adv_eps: 1e-6, // paper / verl
    dynamic_sampling: false, // ours (DAPO's, off by default)
    max_replacement_draws: 64, // ours
  },
  loss: {
    lambda: 0.1, // paper
  },
};

/** The seven runs of docs/method.md section 6: one config each. */
export type Method = 'ntp' | 'ntr' | 'rpt' | 'rmt' | 'rmt-no-dtb' | 'rmt-no-cas' | 'rmt-no-ntp';

export const METHODS: readonly Method[] = [
  'ntp',
  'ntr',
  'rpt',
  'rmt',
  'rmt-no-dtb',
  'rmt-no-cas',
  'rmt-no-ntp',
];

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
