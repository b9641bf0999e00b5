import type { Rng } from '../util/rng.js';
import { padBatch, roundUp } from './batch.js';
import type { Decoder } from './decoder.js';
import { KVCache } from './kv-cache.js';
import { extendsContext } from './rope.js';
import { type SamplingParams, sampleToken } from './sampling.js';

export interface GenerateOptions extends SamplingParams {
  /** Most new tokens per sequence (one cap for all, or one per sequence: a reasoning budget's hard cap). */
  maxNewTokens: number | number[];
  /** Generation of a sequence stops after it emits one of these (the token is kept). */
  stopTokens: number[];
  rng: Rng;
  /** Filler for the left padding of shorter prompts; never attended to. */
  padId?: number;
  /**
   * Prompt length and cache capacity are rounded up to multiples of this, so batches of similar
   * prompts reuse compiled kernels (padding is masked and costs a little compute).
   */
  shapeBucket?: number;
  /**
   * Ids at or above this are padding rows of the embedding (model vocab_size beyond the
   * tokenizer's) and are never sampled; default: every row.
   */
  usableVocab?: number;
}

export interface Generation {
  tokens: number[];
  /** Log-probability of each generated token under the temperature-scaled policy. */
  logprobs: number[];
  /** 'stop' when a stop token ended it, 'length' when the cap cut it. */
  finishReason: 'stop' | 'length';
}

/**
 * Batched incremental decoding with a KV cache: prompts of different lengths are left-padded and
 * prefilled together, then every step feeds one new token per sequence. Sequences that have stopped
 * keep their slot but no longer write attendable keys.
 */
export async function generate(
  model: Decoder,
  prompts: number[][],
  o: GenerateOptions,
): Promise<Generation[]> {
  const B = prompts.length;
  if (B === 0) return [];
  const caps = prompts.map((_, b) => (Array.isArray(o.maxNewTokens) ? o.maxNewTokens[b] : o.maxNewTokens));
  const maxNew = Math.max(0, ...caps);
  const bucket = o.shapeBucket ?? 16;
  const prompt = padBatch(prompts, o.padId ?? 0, 'left', bucket);
  const P = prompt.seqLen;
  if (prompts.some((p) => p.length === 0)) throw new Error('generate: every prompt needs at least one token');
  const limit = model.config.max_position_embeddings;
  const longest = Math.max(...prompts.map((p, b) => p.length + caps[b]));
  if (longest > limit && !extendsContext(model.config)) {
    throw new Error(
      `generate: prompt plus new tokens reach ${longest} positions, above max_position_embeddings ${limit}`,
    );
  }
  const V = model.config.vocab_size;
  const usable = o.usableVocab ?? V;
  if (!Number.isInteger(usable) || usable < 1 || usable > V) {
    throw new RangeError(`generate: usableVocab ${usable} outside [1, vocab_size ${V}]`);
  }
  const cache = new KVCache(model.backend, model.config, B, roundUp(P + maxNew, bucket));
  for (let b = 0; b < B; b++) for (let t = 0; t < P; t++) cache.markValid(b, t, prompt.mask[b * P + t] === 1);
  const out: Generation[] = prompts.map(() => ({ tokens: [], logprobs: [], finishReason: 'length' }));
  const active = caps.map((c) => c > 0);
  const be = model.backend;
  try {
    let logits = await model.forwardCached(prompt.ids, prompt.positions, cache, 0, P);
    for (let step = 0; step < maxNew && active.some(Boolean); step++) {
      const host = await be.read(logits);
      be.free(logits);
      const ids = new Int32Array(B).fill(o.padId ?? 0);
      const positions = new Int32Array(B);
      for (let b = 0; b < B; b++) {
        positions[b] = prompts[b].length + step;
        if (!active[b]) {
          cache.markValid(b, P + step, false);
          continue;
        }
        const { token, logprob } = sampleToken(host.subarray(b * V, (b + 1) * V), o, o.rng, usable);
        out[b].tokens.push(token);
        out[b].logprobs.push(logprob);
        ids[b] = token;
        if (o.stopTokens.includes(token)) {
          out[b].finishReason = 'stop';
          active[b] = false;
        } else if (out[b].tokens.length >= caps[b]) {
          active[b] = false;
        }
        cache.markValid(b, P + step, true);
      }
      if (step + 1 >= maxNew || !active.some(Boolean)) break;
      logits = await model.forwardCached(ids, positions, cache, P + step, 1);
    }
  } finally {
    cache.free();
  }
  return out;
}
