import { evalSplits, TIERS, type Tier } from '../curriculum/tiers.js';
import type { Tokenizer } from '../data/tokenizer.js';
import { padBatch } from '../model/batch.js';
import type { Decoder } from '../model/decoder.js';
import type { KeyPosition } from '../rl/key-positions.js';
import type { PromptFormat } from '../rl/prompt-format.js';
import { MATCH_RULES, type MatchRule, predictionCorrect } from '../rl/rewards.js';
import { generateRollouts } from '../rl/rollouts.js';
import { Rng } from '../util/rng.js';
import { formatHits } from './paired-difference.js';

/**
 * Next-token accuracy on held-out positions as the paper reports it (docs/method.md section 7): split by the
 * proxy's entropy into RPT's nested easy / medium / hard sets, their average, and the mean
 * reasoning length. `ntp` takes the argmax of the next-token distribution; `ntr` lets the model
 * reason (greedy decoding). Each prediction is scored by both rules of `MatchRule` (the exact next
 * token, and RPT's byte prefix of the continuation); the result's splits are those of `match`.
 */
export type EvalMode = 'ntp' | 'ntr';

export interface SplitAccuracy {
  /** Accuracy in [0, 1]. */
  mean: number;
  /** Half-width of the 95% normal-approximation interval of the accuracy. */
  ci95: number;
  n: number;
}

/** Accuracy per nested split and their average under one scoring rule (fractions; NaN: empty split). */
export interface MatchScores {
  easy: number;
  medium: number;
  hard: number;
  avg: number;
}

export interface EvalResult {
  mode: EvalMode;
  /** The rule `easy`/`medium`/`hard`/`avg` are scored by (older results: `token`). */
  match?: MatchRule;
  /** The same predictions scored by each rule. */
  by_match?: Record<MatchRule, MatchScores>;
  easy: SplitAccuracy;
  medium: SplitAccuracy;
  hard: SplitAccuracy;
  /**
   * Every evaluated position, whatever its entropy (absent from results written before it): the
   * plain accuracy with its interval, for comparing two checkpoints on the same positions.
   */
  all?: SplitAccuracy;
  /**
   * Whether each position was right under `match`, in position order, as `0`/`1` characters
   * (paired-difference.ts): two checkpoints evaluated on the same positions are compared pair by pair.
   */
  hits?: string;
  /** Mean of the three split accuracies (the paper's "average"). */
  avg: number;
  /** Mean reasoning tokens per position (0 in ntp mode). */
  reasoning_length: number;
  /** Share of ntr rollouts without an answer (cut by the cap or never closing `</think>`). */
  no_answer_rate: number;
  positions: number;
  /**
   * The most frequent predictions and true next tokens, [text, count], most frequent first (5 each):
   * a model that answers the same token everywhere shows here, with the accuracy that buys it.
   */
  top_predictions?: [string, number][];
  top_targets?: [string, number][];
}

function top(texts: string[], k = 5): [string, number][] {
  const counts = new Map<string, number>();
  for (const t of texts) counts.set(t, (counts.get(t) ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, k);
}

export interface EvalOptions {
  mode: EvalMode;
  eval_splits: readonly [number, number, number];
  /** ntr: budget stated in the prompt (null: none) and the response cap. */
  budget: number | null;
  hardCap: number;
  batch: number;
  /** ntp: tokens the argmax leaves out (the reasoning layout's, see `eval.ntp_over`). */
  ntpExclude?: readonly number[];
  /** The rule the result's splits are scored by (default `token`); `by_match` has both. */
  match?: MatchRule;
  /** Called after each batch with the positions done so far and the total. */
  progress?: (done: number, total: number) => void;
}

/** Evaluations score the prediction alone: the match reward, no length term. */
export const MATCH_ONLY_REWARD = { r_max: 1, w: 0, length_reward_requires_answer: true } as const;

/** The tokens `ntp` evaluation leaves out of its argmax under `eval.ntp_over`. */
export function ntpExcluded(
  over: 'text' | 'vocab',
  tokenizer: Pick<Tokenizer, 'thinkId' | 'endThinkId'>,
): number[] {
  return over === 'text' ? [tokenizer.thinkId, tokenizer.endThinkId] : [];
}

export async function evaluatePositions(
  model: Decoder,
  tokenizer: Tokenizer,
  format: PromptFormat,
  positions: readonly KeyPosition[],
  o: EvalOptions,
): Promise<EvalResult> {
  const correctBy: Record<MatchRule, boolean[]> = { token: [], 'byte-prefix': [] };
  const score = (p: KeyPosition, prediction: { ids: readonly number[]; bytes: Uint8Array } | null) => {
    for (const rule of MATCH_RULES) {
      correctBy[rule].push(
        prediction !== null &&
          predictionCorrect(
            rule,
            prediction,
            { targetId: p.target, continuationIds: p.continuation },
            tokenizer,
          ),
      );
    }
  };
  const predicted: string[] = [];
  let reasoning = 0;
  let unanswered = 0;
  if (o.mode === 'ntp') {
    for (let i = 0; i < positions.length; i += o.batch) {
      const chunk = positions.slice(i, i + o.batch);
      for (const [j, pred] of (
        await argmaxNext(
          model,
          chunk.map((p) => p.context),
          o.ntpExclude ?? [],
          tokenizer.vocabSize,
        )
      ).entries()) {
        score(chunk[j], { ids: [pred], bytes: tokenizer.tokenBytes(pred) });
        predicted.push(tokenizer.decode([pred]));
      }
      o.progress?.(i + chunk.length, positions.length);
    }
  } else {
    // Batches of `o.batch` positions, as generateRollouts would cut them, so progress can be told
    // between them; greedy decoding draws nothing from the generator, whose state carries over anyway.
    const rng = new Rng(0);
    const groups: Awaited<ReturnType<typeof generateRollouts>> = [];
    for (let i = 0; i < positions.length; i += o.batch) {
      const chunk = positions.slice(i, i + o.batch);
      groups.push(
        ...(await generateRollouts(
          model,
          tokenizer,
          format,
          chunk,
          {
            G: 1,
            temperature: 0,
            budget: o.budget ?? o.hardCap,
            stateBudget: o.budget !== null,
            hardCap: o.hardCap,
            rewardKind: 'match',
            reward: MATCH_ONLY_REWARD,
            maxBatch: o.batch,
          },
          rng,
        )),
      );
      o.progress?.(i + chunk.length, positions.length);
    }
    for (const [i, [r]] of groups.entries()) {
      score(
        positions[i],
        r.parsed.finishReason === 'stop'
          ? { ids: r.parsed.predictionIds, bytes: r.parsed.predictionBytes }
          : null,
      );
      predicted.push(
        r.parsed.finishReason === 'stop' ? tokenizer.decode(r.parsed.predictionIds) : '(no answer)',
      );
      reasoning += r.parsed.reasoningIds.length;
      if (r.parsed.finishReason !== 'stop') unanswered++;
    }
  }
  const rule = o.match ?? 'token';
  const accuracy = (hits: readonly boolean[]): SplitAccuracy => {
    const n = hits.length;
    const mean = n ? hits.filter(Boolean).length / n : Number.NaN;
    return { mean, ci95: n ? 1.96 * Math.sqrt((mean * (1 - mean)) / n) : Number.NaN, n };
  };
  const split = (tier: Tier, correct = correctBy[rule]): SplitAccuracy =>
    accuracy(
      positions
        .map((p, i) => (evalSplits(p.entropy, o.eval_splits)[tier] ? correct[i] : null))
        .filter((x) => x !== null),
    );
  const [easy, medium, hard] = TIERS.map((tier) => split(tier));
  const scores = (r: MatchRule): MatchScores => {
    const [e, m, h] = TIERS.map((tier) => split(tier, correctBy[r]).mean);
    return { easy: e, medium: m, hard: h, avg: (e + m + h) / 3 };
  };
  return {
    mode: o.mode,
    match: rule,
    by_match: { token: scores('token'), 'byte-prefix': scores('byte-prefix') },
    easy,
    medium,
    hard,
    all: accuracy(positions.map((_, i) => correctBy[rule][i])),
    hits: formatHits(correctBy[rule]),
    avg: (easy.mean + medium.mean + hard.mean) / 3,
    reasoning_length: o.mode === 'ntr' ? reasoning / Math.max(1, positions.length) : 0,
    no_answer_rate: o.mode === 'ntr' ? unanswered / Math.max(1, positions.length) : 0,
    positions: positions.length,
    top_predictions: top(predicted),
    top_targets: top(positions.map((p) => tokenizer.decode([p.target]))),
  };
}

/**
 * The most likely next token after each context (left-padded batch, last row of each), among the
 * tokenizer's `usable` ids: rows the model has beyond them are padding, never a prediction.
 */
async function argmaxNext(
  model: Decoder,
  contexts: number[][],
  exclude: readonly number[],
  usable: number,
): Promise<number[]> {
  const be = model.backend;
  const V = model.config.vocab_size;
  if (!Number.isInteger(usable) || usable < 1 || usable > V) {
    throw new RangeError(`evaluate: tokenizer has ${usable} ids, the model ${V} rows`);
  }
  const batch = padBatch(contexts, 0, 'left');
  const tape = await model.forward(batch);
  const logitsBuf = await model.logits(tape);
  model.releaseTape(tape);
  const logits = await be.read(logitsBuf);
  be.free(logitsBuf);
  return contexts.map((_, b) => {
    const row = (b * batch.seqLen + batch.seqLen - 1) * V;
    let best = -1;
    for (let v = 0; v < usable; v++) {
      if (exclude.includes(v)) continue;
      if (best < 0 || logits[row + v] > logits[row + best]) best = v;
    }
    return best;
  });
}
