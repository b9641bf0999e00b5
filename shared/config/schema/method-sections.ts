import { z } from 'zod';
import {
  bool,
  checkIn,
  echo,
  int,
  listOf,
  mapping,
  num,
  number,
  oneOf,
  section,
  setting,
  str,
} from './field.js';

/**
 * The method's sections of an RL run config (docs/method.md): budget schedule, rewards, prompt
 * layout, curriculum, GRPO, loss. Field names are the method's names (`B_0`, `r_max`, `p1`,
 * `eps_low`, ...), so a YAML config, the code and the paper read the same. Each default says where
 * it comes from; the functions in `shared/rl/` and `shared/curriculum/` take these sections as their
 * parameter objects, so no number lives in code.
 */

const SUM_TOLERANCE = 1e-6;

/** A fixed-length list of numbers in a range (a tier mix, the entropy edges). */
function numbers3(r: Parameters<typeof number>[0]) {
  const n = number(r);
  return z.tuple([n, n, n], { error: (iss) => `must be a list of 3 numbers, got ${echo(iss.input)}` });
}
function numbers2(r: Parameters<typeof number>[0]) {
  const n = number(r);
  return z.tuple([n, n], { error: (iss) => `must be a list of 2 numbers, got ${echo(iss.input)}` });
}

export const budgetMapping = mapping({
  B_0: num(
    64,
    { above: 0 },
    {
      description: "initial reasoning budget B_0 in tokens (the paper's 800 scaled down for small models)",
      paper: 800,
    },
  ),
  B_min: num(1, { min: 0 }, { description: 'floor of the budget', source: 'paper', rule: 'at most B_0' }),
  gamma: num(
    0.2,
    { above: 0, max: 1 },
    {
      description: 'share of B_0 left at t = T: B_t = max(B_min, floor(B_0 gamma^(t/T)))',
      source: 'paper',
    },
  ),
  hard_cap: int(
    256,
    { min: 1 },
    {
      description:
        "response tokens after which generation is cut and the rollout marked `length` (the paper's 2048 for mid-training, scaled down)",
      paper: 2048,
    },
  ),
  post_training_hard_cap: int(
    4096,
    { min: 1 },
    {
      description: "the paper's cap for its post-training check (math GRPO)",
      source: 'paper',
    },
  ),
}).superRefine((b, ctx) => checkIn(ctx, ['B_min'], b.B_min, { min: 0, max: b.B_0 }));

export const rewardMapping = mapping({
  r_max: num(
    1,
    { min: 0 },
    {
      description:
        "peak of the triangular length reward, reached at l = B_t (the paper's triangle has no stated peak)",
    },
  ),
  w: num(
    0.2,
    { min: 0, max: 1 },
    {
      description: 'weight of the length reward: r = (1 - w) r_match + w r_len (the paper does not give w)',
    },
  ),
  length_reward_requires_answer: bool(true, {
    description:
      'pay r_len only to rollouts that answered (`finish_reason = stop`); otherwise a rollout that never closes `</think>` still earns w r_len',
  }),
});

// RPT's template v0 (RPT appendix, Table 10) verbatim, with the budget sentence of RMT at the end of
// the instruction (ours: where it goes) and the context after "### Context ".
const RPT_TEMPLATE_V0 =
  "Complete the given text under '### Context' by predicting the next token, and wrap it in " +
  "'\\boxed{}'. Please reason step by step to find the most probable next token as the final " +
  'answer, and enclose it in \\boxed{} (note: the token may begin with a space, e.g., ' +
  '\\boxed{ para} or \\boxed{ =}; do not use \\text{}).{budget_sentence}\n\n### Context {context}';

const stopTokenError = (iss: { input?: unknown }) =>
  `must be a token string or a non-negative id, got ${echo(iss.input)}`;
const stopToken = z.union(
  [
    z.string().min(1, { error: stopTokenError }),
    z.int({ error: stopTokenError }).min(0, { error: stopTokenError }),
  ],
  { error: stopTokenError },
);

export const promptMapping = mapping({
  template: oneOf(['bare', 'rpt-v0', 'chat'], 'bare', {
    description:
      "`bare` (the small models' layout), `rpt-v0` (RPT's template v0 as plain text, for instruction-following models) or `chat` (the model's chat template with the RPT instruction as the user turn)",
  }),
  budget_marker: str(' budget {B}:', {
    description:
      "text after `<think>` stating the budget in the bare layout; `{B}` is the number (readable, digits are single tokens, ':' ends the number)",
  }),
  rpt_template: str(RPT_TEMPLATE_V0, {
    description:
      'the `rpt-v0` prompt; `{context}` is the decoded context, `{budget_sentence}` the sentence below or empty',
    source: 'RPT',
    shown: "RPT's template v0, verbatim",
  }),
  rpt_budget_sentence: str(' Please use exactly {B} tokens within <think></think>.', {
    description: "RMT's budget sentence; `{B}` is the number",
    source: 'paper',
  }),
  stop_tokens: listOf(stopToken, [], {
    description:
      "tokens (strings such as `<|im_end|>`, or ids) that end a response; empty: generation_config.json's `eos_token_id`, else the tokenizer's end of text (as transformers' generate)",
  }),
});

export const curriculumMapping = mapping({
  k: int(
    16,
    { min: 1 },
    {
      description: 'proxy candidates the entropy is computed over (renormalised)',
      source: 'RPT',
    },
  ),
  min_entropy: num(
    0.5,
    { min: 0 },
    {
      description:
        "positions above this entropy (nats) are eligible for RL (RPT's lowest evaluation split as the filter)",
    },
  ),
  edges: setting(numbers2({ min: 0 }), [1.0, 1.5], {
    description:
      "training tiers: easy <= edges[0] < medium <= edges[1] < hard (disjoint bins between RPT's nested splits)",
    rule: 'in increasing order',
  }),
  eval_splits: setting(numbers3({ min: 0 }), [0.5, 1.0, 1.5], {
    description:
      "RPT's nested evaluation splits: easy, medium, hard are the positions with entropy above each",
    source: 'RPT',
    rule: 'in increasing order',
  }),
  p1: setting(numbers3({ min: 0, max: 1 }), [0.6, 0.3, 0.1], {
    description: 'tier mix (easy, medium, hard) before t1',
    rule: 'sums to 1',
  }),
  p2: setting(numbers3({ min: 0, max: 1 }), [0.1, 0.3, 0.6], {
    description: 'tier mix after t2',
    rule: 'sums to 1',
  }),
  t1_frac: num(
    0.3,
    { min: 0, max: 1 },
    {
      description: 't1 = t1_frac T: end of the easy-heavy phase',
      source: 'paper',
    },
  ),
  t2_frac: num(
    0.7,
    { min: 0, max: 1 },
    {
      description: 't2 = t2_frac T: the mix reaches p2',
      source: 'paper',
      rule: 'at least t1_frac',
    },
  ),
  adaptive: bool(false, {
    description: "blend rollout outcomes into difficulty; false = the paper's step-based schedule",
  }),
  ema_alpha: num(
    0.3,
    { min: 0, max: 1 },
    { description: 'EMA weight of the newest observation of (1 - accuracy)' },
  ),
  blend: num(
    0.5,
    { min: 0, max: 1 },
    {
      description: 'difficulty = (1 - blend) entropy + blend failure_scale EMA',
    },
  ),
  failure_scale: num(
    Math.log(16),
    { min: 0 },
    {
      description: 'nats a position failed every time counts as (ln k: the largest top-k entropy)',
      shown: 'ln 16 ≈ 2.7726',
    },
  ),
}).superRefine((c, ctx) => {
  if (!(c.edges[0] <= c.edges[1]))
    ctx.addIssue({ code: 'custom', path: ['edges'], message: 'must be in increasing order' });
  const s = c.eval_splits;
  if (!(s[0] <= s[1] && s[1] <= s[2]))
    ctx.addIssue({ code: 'custom', path: ['eval_splits'], message: 'must be in increasing order' });
  for (const f of ['p1', 'p2'] as const) {
    const p = c[f];
    if (Math.abs(p[0] + p[1] + p[2] - 1) > SUM_TOLERANCE)
      ctx.addIssue({ code: 'custom', path: [f], message: `must sum to 1, got ${p[0] + p[1] + p[2]}` });
  }
  checkIn(ctx, ['t2_frac'], c.t2_frac, { min: c.t1_frac, max: 1 });
});

export const grpoMapping = mapping({
  G: int(8, { min: 1 }, { description: 'rollouts per key position', source: 'paper' }),
  temperature: num(
    0.8,
    { min: 0 },
    {
      description: "sampling temperature of rollouts (and of L_RL's log-probs)",
      source: 'paper',
    },
  ),
  eps_low: num(
    0.2,
    { min: 0, max: 1 },
    { description: 'lower ratio clip: rho >= 1 - eps_low', source: 'paper' },
  ),
  eps_high: num(0.2, { min: 0 }, { description: 'upper ratio clip: rho <= 1 + eps_high', source: 'paper' }),
  beta: num(
    0,
    { min: 0 },
    {
      description: 'weight of the k3 KL to a reference policy; 0 turns it off',
      source: 'paper',
    },
  ),
  // The advantage divides by std + adv_eps: a group whose rewards are all equal has std 0.
  adv_eps: num(
    1e-6,
    { above: 0 },
    {
      description: "added to the group std in the advantage's denominator",
      source: 'verl',
    },
  ),
  dynamic_sampling: bool(false, {
    description: "replace zero-variance groups by fresh ones (DAPO's dynamic sampling, off by default)",
  }),
  max_replacement_draws: int(
    64,
    { min: 0 },
    {
      description: 'most replacement groups drawn per step before giving up (a smaller batch then)',
    },
  ),
});

export const lossMapping = mapping({
  lambda: num(
    0.1,
    { min: 0 },
    { description: 'weight of the NTP term: L = L_RL + lambda L_NTP', source: 'paper' },
  ),
});

/** The sections in the order a TrainConfig holds them. */
export const METHOD_SECTIONS = {
  budget: section(budgetMapping, 'the dynamic token budget B_t and the hard cap on response length'),
  reward: section(rewardMapping, 'the match and length rewards'),
  prompt: section(promptMapping, 'the prompt layout of a key position'),
  curriculum: section(curriculumMapping, 'entropy tiers and the tier mix over training'),
  grpo: section(grpoMapping, 'rollouts, advantages and the clipped policy loss'),
  loss: section(lossMapping, 'the dual loss'),
};

export const methodSectionsSchema = z.strictObject(METHOD_SECTIONS);
export type MethodSections = z.output<typeof methodSectionsSchema>;
