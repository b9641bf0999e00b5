import type { Rng } from '../util/rng.js';

export interface SamplingParams {
  /** 0 means greedy (argmax). */
  temperature: number;
  /** Keep the k most likely tokens; 0 keeps all. */
  topK: number;
  /** Keep the smallest set whose probability reaches p; 1 keeps all. */
  topP: number;
}

/** log-softmax of `logits / temperature` (temperature 0 is treated as 1 for the log-probabilities). */
export function logSoftmax(logits: ArrayLike<number>, temperature = 1): Float64Array {
  const t = temperature > 0 ? temperature : 1;
  const out = new Float64Array(logits.length);
  const lse = logSumExp(logits, t);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] / t - lse;
  return out;
}

/** `usable` ids [0, usable) of a row of `rows` logits: at least one, at most the row. */
function checkUsable(fn: string, usable: number, rows: number): void {
  if (!Number.isInteger(usable) || usable < 1 || usable > rows) {
    throw new RangeError(`${fn}: usable ${usable} outside [1, ${rows}]`);
  }
}

/** log sum exp of `logits / t`, the normaliser `logSoftmax` subtracts (the same numbers). */
function logSumExp(logits: ArrayLike<number>, t: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i] / t);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] / t - max);
  return max + Math.log(sum);
}

/**
 * Draws one token among ids [0, usable). Returns it with its log-probability under the
 * temperature-scaled full distribution: the quantity a policy-gradient learner recomputes from the
 * same logits (verl and TRL do the same), not the truncated top-k / top-p distribution it was drawn
 * from. `usable` leaves out the embedding rows a model has beyond its tokenizer's vocabulary
 * (Qwen3 pads 151669 tokens to 151936 rows): those ids are never drawn.
 */
export function sampleToken(
  logits: ArrayLike<number>,
  p: SamplingParams,
  rng: Rng,
  usable: number = logits.length,
): { token: number; logprob: number } {
  checkUsable('sampleToken', usable, logits.length);
  if (p.temperature <= 0) {
    // greedy needs one log-probability: compare the values logSoftmax would store (x / 1 is x)
    // without storing them
    const lse = logSumExp(logits, 1);
    let best = 0;
    let bestLp = logits[0] - lse;
    for (let i = 1; i < usable; i++) {
      const lp = logits[i] - lse;
      if (lp > bestLp) {
        best = i;
        bestLp = lp;
      }
    }
    return { token: best, logprob: bestLp };
  }
  const lp = logSoftmax(logits, p.temperature);
  const order = Array.from({ length: usable }, (_, i) => i).sort((a, b) => lp[b] - lp[a]);
  let keep = p.topK > 0 ? Math.min(p.topK, order.length) : order.length;
  if (p.topP < 1) {
    let cum = 0;
    for (let i = 0; i < keep; i++) {
      cum += Math.exp(lp[order[i]]);
      if (cum >= p.topP) {
        keep = i + 1;
        break;
      }
    }
  }
  let mass = 0;
  for (let i = 0; i < keep; i++) mass += Math.exp(lp[order[i]]);
  let u = rng.next() * mass;
  for (let i = 0; i < keep; i++) {
    u -= Math.exp(lp[order[i]]);
    if (u <= 0) return { token: order[i], logprob: lp[order[i]] };
  }
  const last = order[keep - 1];
  return { token: last, logprob: lp[last] };
}

/**
 * Entropy (nats) of a position's next-token distribution restricted to its k most likely tokens and
 * renormalised: RPT's difficulty measure (k = 16). Only ids [0, usable) count: rows a model has
 * beyond its tokenizer's vocabulary are padding and must not enter the top k.
 */
export function topKEntropy(logits: ArrayLike<number>, k: number, usable: number = logits.length): number {
  checkUsable('topKEntropy', usable, logits.length);
  const lp = logSoftmax(usable === logits.length ? logits : Array.prototype.slice.call(logits, 0, usable));
  const top = Array.from(lp)
    .sort((a, b) => b - a)
    .slice(0, Math.min(k, lp.length));
  const mass = top.reduce((s, x) => s + Math.exp(x), 0);
  let h = 0;
  for (const x of top) {
    const q = Math.exp(x) / mass;
    if (q > 0) h -= q * Math.log(q);
  }
  return h;
}
