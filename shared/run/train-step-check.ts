import { createHash } from 'node:crypto';
import { METHOD_TABLE } from '../config/rmt-defaults.js';
import type { TrainConfig } from '../config/train-config.js';
import type { KeyPosition } from '../rl/key-positions.js';
import type { Rollout } from '../rl/rollouts.js';
import { RequestError } from './request-error.js';

/** What a TrainStep's numbers are checked against: the run's config and the model's sizes. */
export interface TrainStepLimits {
  vocabSize: number;
  /** The model's context length: no prompt may be longer. */
  maxPositions: number;
  cfg: TrainConfig;
}

const bad = (field: string, why: string) => new RequestError(`${field}: ${why}`, 'argument', field);

function checkIds(ids: readonly number[], vocab: number, field: string, maxLen: number): void {
  if (ids.length > maxLen) throw bad(field, `${ids.length} tokens, at most ${maxLen}`);
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!(Number.isInteger(id) && id >= 0 && id < vocab)) {
      throw bad(`${field}[${i}]`, `token id ${id} is outside the vocabulary [0, ${vocab})`);
    }
  }
}

function checkFinite(v: number, field: string, lo: number, hi: number): void {
  if (!(Number.isFinite(v) && v >= lo && v <= hi))
    throw bad(field, `must be finite in [${lo}, ${hi}], got ${v}`);
}

/**
 * Key positions a request brings (TrainStep, GenerateRollouts, Evaluate): at most `max`, each with
 * a context of 1 to data.context_len ids and a continuation of at most data.continuation_len, ids
 * in the vocabulary, a finite entropy.
 */
export function checkKeyPositions(
  positions: readonly KeyPosition[],
  V: number,
  cfg: TrainConfig,
  field: string,
  max: number,
): void {
  if (positions.length > max) throw bad(field, `${positions.length} positions, at most ${max}`);
  for (const [i, p] of positions.entries()) {
    const f = `${field}[${i}]`;
    if (!(Number.isSafeInteger(p.id) && p.id >= 0)) {
      throw bad(`${f}.id`, `must be a non-negative integer, got ${p.id}`);
    }
    if (p.context.length === 0) throw bad(`${f}.context`, 'empty');
    checkIds(p.context, V, `${f}.context`, cfg.data.context_len);
    checkIds([p.target], V, `${f}.target`, 1);
    checkIds(p.continuation, V, `${f}.continuation`, cfg.data.continuation_len);
    if (!(Number.isFinite(p.entropy) && p.entropy >= 0)) {
      throw bad(`${f}.entropy`, `must be finite and >= 0, got ${p.entropy}`);
    }
  }
}

/**
 * Most key positions one step can bring: the drawn positions_per_step, and with dynamic sampling as
 * many again, since each zero-variance group dropped can be replaced by a group at a fresh position
 * and the step's key set keeps the drawn positions (their NTP windows) beside the trained ones.
 */
export function maxStepKeyPositions(cfg: TrainConfig): number {
  const perStep = cfg.train.positions_per_step;
  return cfg.grpo.dynamic_sampling ? 2 * perStep : perStep;
}

/**
 * Every number a TrainStep brings is checked before it touches the learner: token ids in the
 * vocabulary, one finite log-probability <= 0 per response token, finite rewards in the range the
 * run's reward kind can produce, group and batch sizes the run's config allows, lengths the model
 * and the hard cap allow. Advantages are derived from these rewards by the learner itself, so finite
 * rewards are what keeps them finite.
 */
export function checkTrainStep(groups: Rollout[][], positions: KeyPosition[], lim: TrainStepLimits): void {
  const { cfg, vocabSize: V, maxPositions } = lim;
  const perStep = cfg.train.positions_per_step;
  const maxKeys = maxStepKeyPositions(cfg);
  if (groups.length > perStep) throw bad('groups', `${groups.length} groups, at most ${perStep} per step`);
  if (positions.length > maxKeys)
    throw bad('positions', `${positions.length} positions, at most ${maxKeys} per step`);
  if (positions.length === 0) throw bad('positions', 'a step needs its key positions');
  const spec = METHOD_TABLE[cfg.method];
  const ntp = (spec.ntp_loss && cfg.loss.lambda > 0) || spec.reward === 'none';
  if (!ntp && groups.length === 0)
    throw bad('groups', `method ${cfg.method} trains on rollouts only: at least one group`);
  const rMax = Math.abs(cfg.reward.r_max);
  checkKeyPositions(positions, V, cfg, 'positions', maxKeys);
  // The NTP term averages over the window's tokens but the first and the key position's.
  if (ntp && positions.reduce((n, p) => n + p.context.length + p.continuation.length - 2, 0) < 1) {
    throw bad('positions', 'the windows hold no next-token targets (context plus continuation too short)');
  }
  for (const [i, g] of groups.entries()) {
    if (g.length !== cfg.grpo.G)
      throw bad(`groups[${i}].rollouts`, `${g.length} rollouts, a group has grpo.G = ${cfg.grpo.G}`);
    for (const [j, r] of g.entries()) {
      const f = `groups[${i}].rollouts[${j}]`;
      if (r.positionId !== g[0].positionId) throw bad(`${f}.position_id`, 'differs within the group');
      checkIds(r.promptIds, V, `${f}.prompt_ids`, maxPositions);
      if (r.promptIds.length === 0) throw bad(`${f}.prompt_ids`, 'empty');
      checkIds(r.responseIds, V, `${f}.response_ids`, cfg.budget.hard_cap);
      if (r.logprobs.length !== r.responseIds.length) {
        throw bad(
          `${f}.logprobs`,
          `${r.logprobs.length} log-probs for ${r.responseIds.length} response tokens`,
        );
      }
      for (let k = 0; k < r.logprobs.length; k++) {
        const lp = r.logprobs[k];
        if (!(Number.isFinite(lp) && lp <= 0))
          throw bad(`${f}.logprobs[${k}]`, `must be finite and <= 0, got ${lp}`);
      }
      checkIds(r.parsed.reasoningIds, V, `${f}.reasoning_ids`, r.responseIds.length);
      checkIds(r.parsed.predictionIds, V, `${f}.prediction_ids`, r.responseIds.length);
      checkFinite(r.reward.rMatch, `${f}.reward.r_match`, 0, 1);
      checkFinite(r.reward.rLen, `${f}.reward.r_len`, -rMax, rMax);
      checkFinite(r.reward.reward, `${f}.reward.reward`, -(1 + rMax), 1 + rMax);
      if (!(Number.isInteger(r.budget) && r.budget >= 0))
        throw bad(`${f}.budget`, `must be a non-negative integer, got ${r.budget}`);
    }
  }
}

/**
 * The weight version each group was sampled at: one per group, an integer no newer than the
 * learner's weights (`step`) and no older than the staleness bound allows. The version decides
 * whether the sampler's log-probs become pi_old, so a wrong one would silently change the update.
 */
export function checkGroupVersions(
  versions: readonly number[],
  groups: number,
  step: number,
  maxStaleness: number,
): void {
  if (versions.length !== groups)
    throw bad('groups', `${versions.length} weight versions for ${groups} groups`);
  const oldest = Math.max(0, step - maxStaleness);
  for (const [i, v] of versions.entries()) {
    if (!(Number.isSafeInteger(v) && v >= oldest && v <= step)) {
      throw bad(
        `groups[${i}].weight_version`,
        `must be an integer in [${oldest}, ${step}] (step ${step}, distributed.max_staleness ${maxStaleness}), got ${v}`,
      );
    }
  }
}

/**
 * A digest of everything a TrainStep asks for: a retried call is answered from the learner's cache
 * only when its digest is the one the step was taken with.
 */
export function trainStepDigest(
  step: number,
  groups: Rollout[][],
  positions: KeyPosition[],
  versions: readonly number[] = groups.map(() => step),
): string {
  const h = createHash('sha256');
  h.update(`step ${step}\n`);
  h.update(`versions ${JSON.stringify(versions)}\n`);
  for (const p of positions) h.update(JSON.stringify([p.id, p.context, p.target, p.continuation, p.entropy]));
  h.update('\ngroups\n');
  for (const g of groups) {
    h.update('[');
    for (const r of g) {
      h.update(
        JSON.stringify([
          r.positionId,
          r.promptIds,
          r.responseIds,
          r.logprobs,
          r.parsed.reasoningIds,
          r.parsed.predictionIds,
          Array.from(r.parsed.predictionBytes),
          r.parsed.finishReason,
          r.reward.reward,
          r.reward.rMatch,
          r.reward.rLen,
          r.budget,
        ]),
      );
    }
    h.update(']');
  }
  return h.digest('hex');
}
