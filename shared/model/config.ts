/**
 * Decoder configuration, spelled with the field names of a Hugging Face `config.json` so that a
 * checkpoint folder written by rmt opens in transformers and a Llama / Qwen2 / Qwen3 folder from disk
 * opens in rmt.
 */
export type ModelType = 'llama' | 'qwen2' | 'qwen3';

export interface ModelConfig {
  model_type: ModelType;
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
  max_position_embeddings: number;
  /** Biases on q/k/v projections: always on for qwen2, optional for llama and qwen3. */
  attention_bias: boolean;
  bos_token_id?: number | null;
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
}

export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly field: string,
    message: string,
  ) {
    super(`${source}: field "${field}": ${message}`);
    this.name = 'ConfigError';
  }
}

const ARCHITECTURES: Record<ModelType, string> = {
  llama: 'LlamaForCausalLM',
  qwen2: 'Qwen2ForCausalLM',
  qwen3: 'Qwen3ForCausalLM',
};

/** Qwen3 normalises q and k per head before RoPE; Llama and Qwen2 do not. */
export const hasQkNorm = (c: ModelConfig): boolean => c.model_type === 'qwen3';

/** Qwen2 always has q/k/v biases; the others only when `attention_bias` is set. */
export const hasQkvBias = (c: ModelConfig): boolean => c.model_type === 'qwen2' || c.attention_bias;

/** Llama and Qwen3 put `attention_bias` on o_proj too; Qwen2's o_proj never has one. */
export const hasOBias = (c: ModelConfig): boolean => c.model_type !== 'qwen2' && c.attention_bias;

function int(raw: Record<string, unknown>, source: string, field: string, fallback?: number): number {
  const v = raw[field] ?? fallback;
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new ConfigError(source, field, `expected a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function num(raw: Record<string, unknown>, source: string, field: string, fallback?: number): number {
  const v = raw[field] ?? fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new ConfigError(source, field, `expected a positive number, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * Reads and validates a parsed `config.json`. `source` names the file in errors. Defaults follow
 * transformers' own (head_dim = hidden_size / num_attention_heads, num_key_value_heads = heads).
 */
export function parseModelConfig(raw: unknown, source = 'config.json'): ModelConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(source, '(root)', 'expected a JSON object');
  }
  const r = raw as Record<string, unknown>;
  const model_type = r.model_type;
  if (model_type !== 'llama' && model_type !== 'qwen2' && model_type !== 'qwen3') {
    throw new ConfigError(
      source,
      'model_type',
      `unsupported ${JSON.stringify(model_type)}; rmt implements llama, qwen2, qwen3`,
    );
  }
  if (r.rope_scaling != null) {
    throw new ConfigError(
      source,
      'rope_scaling',
      'RoPE scaling variants are not implemented; remove it or use a model without it',
    );
  }
  const hidden_size = int(r, source, 'hidden_size');
  const num_attention_heads = int(r, source, 'num_attention_heads');
  const num_key_value_heads = int(r, source, 'num_key_value_heads', num_attention_heads);
  if (num_attention_heads % num_key_value_heads !== 0) {
    throw new ConfigError(
      source,
      'num_key_value_heads',
      `${num_key_value_heads} does not divide num_attention_heads ${num_attention_heads}`,
    );
  }
  const headDimDefault =
    hidden_size % num_attention_heads === 0 ? hidden_size / num_attention_heads : undefined;
  const head_dim = int(r, source, 'head_dim', headDimDefault);
  if (head_dim % 2 !== 0)
    throw new ConfigError(source, 'head_dim', `RoPE needs an even head_dim, got ${head_dim}`);
  const tie = r.tie_word_embeddings ?? false;
  if (typeof tie !== 'boolean') throw new ConfigError(source, 'tie_word_embeddings', 'expected a boolean');
  const bias = r.attention_bias ?? false;
  if (typeof bias !== 'boolean') throw new ConfigError(source, 'attention_bias', 'expected a boolean');
  return {
    model_type,
    vocab_size: int(r, source, 'vocab_size'),
    hidden_size,
    intermediate_size: int(r, source, 'intermediate_size'),
    num_hidden_layers: int(r, source, 'num_hidden_layers'),
    num_attention_heads,
    num_key_value_heads,
    head_dim,
    rms_norm_eps: num(r, source, 'rms_norm_eps', 1e-6),
    rope_theta: num(r, source, 'rope_theta', 10000),
    tie_word_embeddings: tie,
    max_position_embeddings: int(r, source, 'max_position_embeddings', 2048),
    attention_bias: bias,
    bos_token_id: (r.bos_token_id as number | null | undefined) ?? null,
    eos_token_id: (r.eos_token_id as number | number[] | null | undefined) ?? null,
    pad_token_id: (r.pad_token_id as number | null | undefined) ?? null,
  };
}

/** The `config.json` object transformers expects for this configuration. */
export function toHfConfig(c: ModelConfig): Record<string, unknown> {
  return {
    architectures: [ARCHITECTURES[c.model_type]],
    ...c,
    hidden_act: 'silu',
    attention_dropout: 0,
    initializer_range: 0.02,
    use_cache: true,
    torch_dtype: 'float32',
    rope_scaling: null,
    ...(c.model_type === 'llama' ? { mlp_bias: false, pretraining_tp: 1 } : {}),
    ...(c.model_type !== 'llama'
      ? { use_sliding_window: false, sliding_window: null, max_window_layers: c.num_hidden_layers }
      : {}),
  };
}
