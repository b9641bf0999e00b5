import { CORPUS_NAMES, isCorpusName } from '../data/corpora.js';
import { MATH_CORPUS_DEFAULTS } from '../data/synthetic-math.js';
import { RunConfigError } from './merge.js';
import { checkList, checkOptimizer, checkRange } from './ranges.js';
import type { TrainConfig } from './train-config.js';

const SUM_TOLERANCE = 1e-6;

/**
 * The ranges of every numeric setting of an RL run (docs/method.md's meaning of each: a budget is a
 * positive number of tokens, w and the tier mixes are weights in [0, 1], ...). One function for
 * `rmt train`, StartRun and every service that receives a run's config.
 */
export function checkTrainRanges(c: TrainConfig, source: string): void {
  const r = (field: string, v: unknown, range: Parameters<typeof checkRange>[3]) =>
    checkRange(source, field, v, range);
  checkOptimizer(source, c.train);
  r('run.seed', c.run.seed, { int: true });
  r('train.positions_per_step', c.train.positions_per_step, { int: true, min: 1 });
  r('train.micro_batch', c.train.micro_batch, { int: true, min: 1 });
  r('train.generation_batch', c.train.generation_batch, { int: true, min: 1 });

  if (!Array.isArray(c.data.corpora) || c.data.corpora.length === 0) {
    throw new RunConfigError(source, 'data.corpora', 'at least one corpus');
  }
  for (const [i, name] of c.data.corpora.entries()) {
    if (typeof name !== 'string' || (name !== 'math' && !isCorpusName(name))) {
      throw new RunConfigError(
        source,
        `data.corpora[${i}]`,
        `unknown corpus (math, ${CORPUS_NAMES.join(', ')})`,
      );
    }
  }
  for (const key of Object.keys(c.data.math)) {
    if (!(key in MATH_CORPUS_DEFAULTS)) {
      throw new RunConfigError(
        source,
        `data.math.${key}`,
        `unknown setting (known: ${Object.keys(MATH_CORPUS_DEFAULTS).join(', ')})`,
      );
    }
  }
  r('data.max_chars_per_corpus', c.data.max_chars_per_corpus, { int: true, min: 0 });
  r('data.rl_tokens', c.data.rl_tokens, { int: true, min: 1 });
  r('data.eval_tokens', c.data.eval_tokens, { int: true, min: 1 });
  r('data.held_out_fraction', c.data.held_out_fraction, { above: 0, below: 1 });
  r('data.context_len', c.data.context_len, { int: true, min: 1 });
  r('data.continuation_len', c.data.continuation_len, { int: true, min: 1 });
  r('data.score_window', c.data.score_window, { int: true, min: 2 });

  r('budget.B_0', c.budget.B_0, { above: 0 });
  r('budget.B_min', c.budget.B_min, { min: 0, max: c.budget.B_0 });
  r('budget.gamma', c.budget.gamma, { above: 0, max: 1 });
  r('budget.hard_cap', c.budget.hard_cap, { int: true, min: 1 });
  r('budget.post_training_hard_cap', c.budget.post_training_hard_cap, { int: true, min: 1 });

  r('reward.r_max', c.reward.r_max, { min: 0 });
  r('reward.w', c.reward.w, { min: 0, max: 1 });

  const cur = c.curriculum;
  r('curriculum.k', cur.k, { int: true, min: 1 });
  r('curriculum.min_entropy', cur.min_entropy, { min: 0 });
  const edges = checkList(source, 'curriculum.edges', cur.edges, 2, { min: 0 });
  if (!(edges[0] <= edges[1]))
    throw new RunConfigError(source, 'curriculum.edges', 'must be in increasing order');
  const splits = checkList(source, 'curriculum.eval_splits', cur.eval_splits, 3, { min: 0 });
  if (!(splits[0] <= splits[1] && splits[1] <= splits[2])) {
    throw new RunConfigError(source, 'curriculum.eval_splits', 'must be in increasing order');
  }
  for (const f of ['p1', 'p2'] as const) {
    const p = checkList(source, `curriculum.${f}`, cur[f], 3, { min: 0, max: 1 });
    if (Math.abs(p[0] + p[1] + p[2] - 1) > SUM_TOLERANCE) {
      throw new RunConfigError(source, `curriculum.${f}`, `must sum to 1, got ${p[0] + p[1] + p[2]}`);
    }
  }
  r('curriculum.t1_frac', cur.t1_frac, { min: 0, max: 1 });
  r('curriculum.t2_frac', cur.t2_frac, { min: cur.t1_frac, max: 1 });
  r('curriculum.ema_alpha', cur.ema_alpha, { min: 0, max: 1 });
  r('curriculum.blend', cur.blend, { min: 0, max: 1 });
  r('curriculum.failure_scale', cur.failure_scale, { min: 0 });

  r('grpo.G', c.grpo.G, { int: true, min: 1 });
  r('grpo.temperature', c.grpo.temperature, { min: 0 });
  r('grpo.eps_low', c.grpo.eps_low, { min: 0, max: 1 });
  r('grpo.eps_high', c.grpo.eps_high, { min: 0 });
  r('grpo.beta', c.grpo.beta, { min: 0 });
  // The advantage divides by std + adv_eps: a group whose rewards are all equal has std 0.
  r('grpo.adv_eps', c.grpo.adv_eps, { above: 0 });
  r('grpo.max_replacement_draws', c.grpo.max_replacement_draws, { int: true, min: 0 });
  r('loss.lambda', c.loss.lambda, { min: 0 });

  r('eval.every', c.eval.every, { int: true, min: 0 });
  r('eval.positions', c.eval.positions, { int: true, min: 1 });
  if (c.eval.budget !== null) r('eval.budget', c.eval.budget, { int: true, min: 1 });
  r('checkpoint.every', c.checkpoint.every, { int: true, min: 1 });
  r('checkpoint.keep', c.checkpoint.keep, { int: true, min: 1 });
  r('distributed.max_staleness', c.distributed.max_staleness, { int: true, min: 0 });
  r('distributed.job_timeout_s', c.distributed.job_timeout_s, { above: 0 });
  r('distributed.observation_timeout_s', c.distributed.observation_timeout_s, { min: 0 });
  r('distributed.worker_wait_s', c.distributed.worker_wait_s, { min: 0 });
}
