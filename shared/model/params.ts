import { hasOBias, hasQkNorm, hasQkvBias, type ModelConfig } from './config.js';

/**
 * The parameters of a decoder, named exactly as transformers names them in `model.safetensors`
 * (row-major, `[out, in]` for projections), so checkpoints move between rmt and PyTorch unchanged.
 */
export interface ParamSpec {
  name: string;
  shape: number[];
  /** How a fresh parameter starts: RMSNorm gains at one, biases at zero, matrices normal(0, std). */
  init: 'ones' | 'zeros' | 'normal';
  /** AdamW's decoupled weight decay applies to matrices only, as in nanoGPT and most LLM recipes. */
  decay: boolean;
}

export const layerPrefix = (i: number): string => `model.layers.${i}`;

export function paramSpecs(c: ModelConfig): ParamSpec[] {
  const D = c.hidden_size;
  const hd = c.head_dim;
  const qDim = c.num_attention_heads * hd;
  const kvDim = c.num_key_value_heads * hd;
  const I = c.intermediate_size;
  const mat = (name: string, out: number, inp: number): ParamSpec => ({
    name,
    shape: [out, inp],
    init: 'normal',
    decay: true,
  });
  const vec = (name: string, n: number, init: 'ones' | 'zeros'): ParamSpec => ({
    name,
    shape: [n],
    init,
    decay: false,
  });
  const specs: ParamSpec[] = [mat('model.embed_tokens.weight', c.vocab_size, D)];
  for (let i = 0; i < c.num_hidden_layers; i++) {
    const p = layerPrefix(i);
    specs.push(vec(`${p}.input_layernorm.weight`, D, 'ones'));
    specs.push(mat(`${p}.self_attn.q_proj.weight`, qDim, D));
    specs.push(mat(`${p}.self_attn.k_proj.weight`, kvDim, D));
    specs.push(mat(`${p}.self_attn.v_proj.weight`, kvDim, D));
    if (hasQkvBias(c)) {
      specs.push(vec(`${p}.self_attn.q_proj.bias`, qDim, 'zeros'));
      specs.push(vec(`${p}.self_attn.k_proj.bias`, kvDim, 'zeros'));
      specs.push(vec(`${p}.self_attn.v_proj.bias`, kvDim, 'zeros'));
    }
    if (hasQkNorm(c)) {
      specs.push(vec(`${p}.self_attn.q_norm.weight`, hd, 'ones'));
      specs.push(vec(`${p}.self_attn.k_norm.weight`, hd, 'ones'));
    }
    specs.push(mat(`${p}.self_attn.o_proj.weight`, D, qDim));
    if (hasOBias(c)) specs.push(vec(`${p}.self_attn.o_proj.bias`, D, 'zeros'));
    specs.push(vec(`${p}.post_attention_layernorm.weight`, D, 'ones'));
    specs.push(mat(`${p}.mlp.gate_proj.weight`, I, D));
    specs.push(mat(`${p}.mlp.up_proj.weight`, I, D));
    specs.push(mat(`${p}.mlp.down_proj.weight`, D, I));
  }
  specs.push(vec('model.norm.weight', D, 'ones'));
  if (!c.tie_word_embeddings) specs.push(mat('lm_head.weight', c.vocab_size, D));
  return specs;
}

export const numel = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
