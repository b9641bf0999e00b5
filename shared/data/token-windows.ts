import { type LossTargets, nextTokenTargets, type TokenBatch } from '../model/batch.js';
import type { Rng } from '../util/rng.js';

/**
 * Fixed-length training windows cut from one long token stream (documents joined by the end-of-text
 * token), nanoGPT-style: each window of seqLen tokens is trained on every next-token prediction
 * inside it.
 */
export function windowBatch(tokens: Int32Array, starts: readonly number[], seqLen: number): TokenBatch {
  const batch = starts.length;
  const ids = new Int32Array(batch * seqLen);
  starts.forEach((s, b) => {
    ids.set(tokens.subarray(s, s + seqLen), b * seqLen);
  });
  const mask = new Uint8Array(batch * seqLen).fill(1);
  const positions = new Int32Array(batch * seqLen);
  for (let i = 0; i < positions.length; i++) positions[i] = i % seqLen;
  return { batch, seqLen, ids, mask, positions };
}

export function randomStarts(tokens: Int32Array, count: number, seqLen: number, rng: Rng): number[] {
  if (tokens.length < seqLen)
    throw new Error(`token stream of ${tokens.length} is shorter than seq_len ${seqLen}`);
  return Array.from({ length: count }, () => rng.int(tokens.length - seqLen + 1));
}

/** Evenly spaced, non-overlapping windows: a fixed held-out set that every evaluation reuses. */
export function evalStarts(tokens: Int32Array, count: number, seqLen: number): number[] {
  const available = Math.floor(tokens.length / seqLen);
  if (available < 1) throw new Error(`held-out stream of ${tokens.length} is shorter than seq_len ${seqLen}`);
  const n = Math.min(count, available);
  const stride = Math.floor(available / n);
  return Array.from({ length: n }, (_, i) => i * stride * seqLen);
}

export function windowTargets(b: TokenBatch): LossTargets {
  return nextTokenTargets(b);
}

/**
 * Cross-entropy (nats/token) of held-out tokens under the training stream's unigram distribution
 * with add-one smoothing: the loss a model that ignores context would reach.
 */
export function unigramBaseline(train: Int32Array, heldOut: Int32Array, vocab: number): number {
  const counts = new Float64Array(vocab).fill(1);
  for (const t of train) counts[t]++;
  const total = train.length + vocab;
  let nll = 0;
  for (const t of heldOut) nll -= Math.log(counts[t] / total);
  return nll / heldOut.length;
}
