/**
 * The verifiable rewards of next-token reasoning (docs/method.md section 2): RPT's byte-prefix reward, RMT's
 * exact next-token match, and RMT's total with the length reward. All are computed from the corpus
 * itself, so no reward model can be gamed.
 */
import type { RewardConfig, RewardKind } from '../config/rmt-defaults.js';
import type { Tokenizer } from '../data/tokenizer.js';
import { lengthReward } from './length-reward.js';
import type { ParsedResponse } from './prompt-format.js';

/**
 * RPT Eq. 3: 1 iff the prediction's bytes equal the first l bytes of the ground-truth continuation
 * and l is a cumulative byte length of its tokens. Comparing bytes rather than ids lets a prediction
 * spell several tokens (or tokenize them differently) and still earn 1, while the boundary rule
 * refuses a prediction that stops inside a token. An empty prediction earns 0 (l = 0 is no answer).
 */
export function bytePrefixReward(
  predictionBytes: Uint8Array,
  groundTruthTokenIds: readonly number[],
  tokenizer: Pick<Tokenizer, 'tokenBytes'>,
): 0 | 1 {
  const l = predictionBytes.length;
  if (l === 0) return 0;
  let at = 0;
  for (const id of groundTruthTokenIds) {
    const token = tokenizer.tokenBytes(id);
    for (let j = 0; j < token.length; j++) {
      if (at === l) return 0; // the prediction ended inside this token
      if (predictionBytes[at] !== token[j]) return 0;
      at++;
    }
    if (at === l) return 1;
  }
  return 0; // the prediction is longer than the continuation
}

/** RMT: 1 iff the prediction is exactly the single target token `tau[pos]`, by id. */
export function matchReward(predictedTokenIds: readonly number[], targetId: number): 0 | 1 {
  return predictedTokenIds.length === 1 && predictedTokenIds[0] === targetId ? 1 : 0;
}

/**
 * How an evaluation scores a prediction: `token` is RMT's exact match of one token (the match
 * reward), `byte-prefix` scores it as RPT's reward does, so a method trained on either reward can be
 * judged by the rule it was trained on as well as by the other.
 */
export type MatchRule = 'token' | 'byte-prefix';
export const MATCH_RULES: readonly MatchRule[] = ['token', 'byte-prefix'];

/**
 * Whether an answered prediction is right under `rule`: its token ids against the target
 * (`token`), or its bytes against the ground-truth continuation (`byte-prefix`, RPT Eq. 3).
 */
export function predictionCorrect(
  rule: MatchRule,
  prediction: { ids: readonly number[]; bytes: Uint8Array },
  target: RolloutTarget,
  tokenizer: Pick<Tokenizer, 'tokenBytes'>,
): boolean {
  return rule === 'token'
    ? matchReward(prediction.ids, target.targetId) === 1
    : bytePrefixReward(prediction.bytes, target.continuationIds, tokenizer) === 1;
}

/** r = (1 - w) r_match + w r_len. */
export function totalReward(rMatch: number, rLen: number, w: number): number {
  return (1 - w) * rMatch + w * rLen;
}

export interface RolloutTarget {
  /** tau[pos]. */
  targetId: number;
  /** tau[>= pos] (as far as the corpus window goes); only the byte-prefix reward reads past the first. */
  continuationIds: readonly number[];
}

export interface RolloutReward {
  /** The total the advantage is computed from. */
  reward: number;
  /** Correctness: the match (or byte-prefix) reward, 0 for a rollout without an answer. */
  rMatch: number;
  /** Length reward (0 for kinds without it). */
  rLen: number;
}

/**
 * The reward of one parsed rollout under a method's reward kind. A rollout without an answer
 * (`no_answer`, `length`) gets r_match = 0, and, with `length_reward_requires_answer`, r_len = 0.
 */
export function rolloutReward(
  kind: RewardKind,
  parsed: ParsedResponse,
  target: RolloutTarget,
  budget: number,
  config: RewardConfig,
  tokenizer: Pick<Tokenizer, 'tokenBytes'>,
): RolloutReward {
  const answered = parsed.finishReason === 'stop';
  if (kind === 'byte-prefix') {
    const r = answered ? bytePrefixReward(parsed.predictionBytes, target.continuationIds, tokenizer) : 0;
    return { reward: r, rMatch: r, rLen: 0 };
  }
  const rMatch = answered ? matchReward(parsed.predictionIds, target.targetId) : 0;
  if (kind === 'match') return { reward: rMatch, rMatch, rLen: 0 };
  const paysLength = answered || !config.length_reward_requires_answer;
  const rLen = paysLength ? lengthReward(parsed.reasoningIds.length, budget, config) : 0;
  return { reward: totalReward(rMatch, rLen, config.w), rMatch, rLen };
}
