import type { ModelConfig } from '../shared/model/config.js';

const base = {
  model_type: 'qwen3',
  vocab_size: 2259,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
  max_position_embeddings: 512,
  attention_bias: false,
} as const;

/**
 * The bench models. `tiny` is the default model of configs/pretrain-tiny.yaml (vocabulary 2259: the
 * tokenizer that config builds); `small` is the same family four layers deep and four times wider.
 */
export const BENCH_MODELS: Record<string, ModelConfig> = {
  tiny: {
    ...base,
    hidden_size: 64,
    intermediate_size: 176,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
  },
  small: {
    ...base,
    hidden_size: 256,
    intermediate_size: 704,
    num_hidden_layers: 4,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    head_dim: 32,
  },
};
