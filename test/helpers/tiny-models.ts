import type { Backend } from '../../shared/kernels/backend.js';
import { type LossTargets, padBatch, type TokenBatch } from '../../shared/model/batch.js';
import { type ModelConfig, parseModelConfig } from '../../shared/model/config.js';
import { Decoder, type Params } from '../../shared/model/decoder.js';
import { numel, paramSpecs } from '../../shared/model/params.js';
import { Rng } from '../../shared/util/rng.js';

/** Two tiny configurations that between them exercise every architectural option. */
export const TINY_CONFIGS: Record<string, ModelConfig> = {
  'qwen3-gqa': parseModelConfig({
    model_type: 'qwen3',
    vocab_size: 29,
    hidden_size: 16,
    intermediate_size: 24,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 4,
    rope_theta: 10000,
    tie_word_embeddings: false,
  }),
  'qwen2-tied': parseModelConfig({
    model_type: 'qwen2',
    vocab_size: 23,
    hidden_size: 12,
    intermediate_size: 20,
    num_hidden_layers: 2,
    num_attention_heads: 3,
    num_key_value_heads: 1,
    head_dim: 4,
    rope_theta: 500,
    tie_word_embeddings: true,
  }),
  'llama-obias': parseModelConfig({
    model_type: 'llama',
    vocab_size: 19,
    hidden_size: 8,
    intermediate_size: 12,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 2,
    rope_theta: 10000,
    tie_word_embeddings: false,
    attention_bias: true,
  }),
};

/** Random weights large enough that every path carries signal (std 0.3, gains near 1). */
export function randomParams(c: ModelConfig, seed: number): Map<string, Float64Array> {
  const rng = new Rng(seed);
  const out = new Map<string, Float64Array>();
  for (const s of paramSpecs(c)) {
    const a = new Float64Array(numel(s.shape));
    for (let i = 0; i < a.length; i++) a[i] = s.init === 'ones' ? 1 + 0.2 * rng.normal() : 0.3 * rng.normal();
    out.set(s.name, a);
  }
  return out;
}

export function upload(be: Backend, host: Map<string, ArrayLike<number>>): Params {
  return new Map([...host].map(([k, v]) => [k, be.upload(v)]));
}

export function makeDecoder(be: Backend, c: ModelConfig, host: Map<string, ArrayLike<number>>): Decoder {
  return new Decoder(c, be, upload(be, host));
}

/** A ragged batch: one full sequence, one right-padded, one left-padded; random weights. */
export function raggedBatch(c: ModelConfig, seed: number): { batch: TokenBatch; targets: LossTargets } {
  const rng = new Rng(seed);
  const seq = (n: number) => Array.from({ length: n }, () => rng.int(c.vocab_size));
  const right = padBatch([seq(7), seq(4)], 0, 'right');
  const left = padBatch([seq(5)], 0, 'left');
  // Assemble [full, right-padded, left-padded(2)] of length 7.
  const T = 7;
  const ids = new Int32Array(3 * T);
  const mask = new Uint8Array(3 * T);
  ids.set(right.ids);
  mask.set(right.mask);
  for (let t = 0; t < T; t++) {
    ids[2 * T + t] = t < 2 ? 0 : left.ids[t - 2];
    mask[2 * T + t] = t < 2 ? 0 : 1;
  }
  const batch = padBatchFrom(ids, mask, 3, T);
  const targets = new Int32Array(3 * T).fill(-1);
  const weights = new Float64Array(3 * T);
  for (let i = 0; i < 3 * T; i++) {
    if (mask[i] && (i + 1) % T !== 0 && mask[i + 1]) {
      targets[i] = rng.int(c.vocab_size);
      weights[i] = 0.5 + rng.next();
    }
  }
  return { batch, targets: { targets, weights } };
}

function padBatchFrom(ids: Int32Array, mask: Uint8Array, batch: number, seqLen: number): TokenBatch {
  const positions = new Int32Array(batch * seqLen);
  for (let b = 0; b < batch; b++) {
    let n = 0;
    for (let t = 0; t < seqLen; t++) {
      positions[b * seqLen + t] = Math.max(0, n - 1 + mask[b * seqLen + t]);
      n += mask[b * seqLen + t];
    }
  }
  return { batch, seqLen, ids, mask, positions };
}
