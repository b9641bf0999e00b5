import type { RopeFrequencies } from '../kernels/backend.js';
import type { ModelConfig } from './config.js';
import type { RopeScaling } from './rope-config.js';

/**
 * Inverse frequencies and attention scale of each RoPE type, computed in float64 the way
 * transformers' rope initialisers compute them (modeling_rope_utils), for the full head_dim.
 */

/** 1 / theta^(2i / dim) for i < dim/2: the unscaled frequencies every variant starts from. */
export function defaultInvFreq(dim: number, theta: number): Float64Array {
  const inv = new Float64Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) inv[i] = 1 / theta ** ((2 * i) / dim);
  return inv;
}

function llama3(dim: number, theta: number, s: Extract<RopeScaling, { rope_type: 'llama3' }>): Float64Array {
  const inv = defaultInvFreq(dim, theta);
  const old = s.original_max_position_embeddings;
  const lowWavelen = old / s.low_freq_factor;
  const highWavelen = old / s.high_freq_factor;
  for (let i = 0; i < inv.length; i++) {
    const wavelen = (2 * Math.PI) / inv[i];
    if (wavelen > lowWavelen) inv[i] /= s.factor;
    else if (wavelen >= highWavelen) {
      // Between the two wavelengths: interpolate between the scaled and the unscaled frequency.
      const smooth = (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      inv[i] = ((1 - smooth) * inv[i]) / s.factor + smooth * inv[i];
    }
  }
  return inv;
}

function yarn(dim: number, theta: number, s: Extract<RopeScaling, { rope_type: 'yarn' }>): Float64Array {
  const orig = s.original_max_position_embeddings;
  // The dimension index at which a wavelength completes `rotations` turns over the original context.
  const correctionDim = (rotations: number) =>
    (dim * Math.log(orig / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = correctionDim(s.beta_fast);
  let high = correctionDim(s.beta_slow);
  if (s.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001;
  const inv = new Float64Array(dim / 2);
  for (let i = 0; i < dim / 2; i++) {
    const posFreq = theta ** ((2 * i) / dim);
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    const extrapolation = 1 - ramp;
    inv[i] = (1 / (s.factor * posFreq)) * (1 - extrapolation) + (1 / posFreq) * extrapolation;
  }
  return inv;
}

/** Dynamic NTK: the base grows with the sequence once it is longer than max_position_embeddings. */
function dynamic(dim: number, theta: number, factor: number, maxPos: number, seqLen: number): Float64Array {
  const len = Math.max(seqLen, maxPos);
  const base = theta * ((factor * len) / maxPos - (factor - 1)) ** (dim / (dim - 2));
  return defaultInvFreq(dim, base);
}

/** Frequencies of a configuration for a sequence of `seqLen` positions (only dynamic depends on it). */
export function ropeFrequenciesFor(c: ModelConfig, seqLen: number): RopeFrequencies {
  const dim = c.head_dim;
  const theta = c.rope_theta;
  const s = c.rope_scaling ?? null;
  if (!s) return { invFreq: defaultInvFreq(dim, theta), attentionScale: 1 };
  switch (s.rope_type) {
    case 'linear':
      return { invFreq: defaultInvFreq(dim, theta).map((f) => f / s.factor), attentionScale: 1 };
    case 'dynamic':
      return { invFreq: dynamic(dim, theta, s.factor, c.max_position_embeddings, seqLen), attentionScale: 1 };
    case 'llama3':
      return { invFreq: llama3(dim, theta, s), attentionScale: 1 };
    case 'yarn':
      return { invFreq: yarn(dim, theta, s), attentionScale: s.attention_factor };
  }
}

/** Whether the type stretches past max_position_embeddings (only dynamic NTK does). */
export const extendsContext = (c: ModelConfig): boolean => c.rope_scaling?.rope_type === 'dynamic';

const fixed = new WeakMap<ModelConfig, RopeFrequencies>();

/**
 * The frequencies for one rope call over `positions`: the same every call except for dynamic NTK,
 * which (as transformers' dynamic update) takes the sequence length as the largest position + 1.
 * A position at or beyond max_position_embeddings is an error unless the type extends the context.
 */
export function ropeFrequencies(c: ModelConfig, positions: Int32Array): RopeFrequencies {
  let maxPos = 0;
  for (const p of positions) if (p > maxPos) maxPos = p;
  if (extendsContext(c)) return ropeFrequenciesFor(c, maxPos + 1);
  if (maxPos >= c.max_position_embeddings) {
    throw new RangeError(
      `position ${maxPos} is beyond the model's max_position_embeddings ${c.max_position_embeddings} ` +
        `(rope_type ${c.rope_scaling?.rope_type ?? 'default'} does not extend the context)`,
    );
  }
  let f = fixed.get(c);
  if (!f) {
    f = ropeFrequenciesFor(c, maxPos + 1);
    fixed.set(c, f);
  }
  return f;
}
