/**
 * Decoder configuration, spelled with the field names of a Hugging Face `config.json` so that a
 * checkpoint folder written by rmt opens in transformers and a Llama / Qwen2 / Qwen3 folder from disk
 * opens in rmt.
 */
import { ConfigError } from './config-error.js';
import { parseRope, type RopeScaling, ropeToHf } from './rope-config.js';

export { ConfigError } from './config-error.js';
export type { RopeScaling } from './rope-config.js';

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
  /** The RoPE variant beyond plain rotation (null or absent: the original RoPE). */
  rope_scaling?: RopeScaling | null;
  tie_word_embeddings: boolean;
  max_position_embeddings: number;
  /** Biases on q/k/v projections: always on for qwen2, optional for llama and qwen3. */
  attention_bias: boolean;
  bos_token_id?: number | null;
  eos_token_id?: number | number[] | null;
  pad_token_id?: number | null;
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

function bool(raw: Record<string, unknown>, source: string, field: string, fallback: boolean): boolean {
  const v = raw[field] ?? fallback;
  if (typeof v !== 'boolean') throw new ConfigError(source, field, 'expected a boolean');
  return v;
}

/** A token id: a non-negative integer, or null. */
function tokenId(v: unknown, source: string, field: string): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new ConfigError(
      source,
      field,
      `expected a non-negative integer token id, got ${JSON.stringify(v)}`,
    );
  }
  return v;
}

/** transformers' per-family defaults for fields a config.json may leave out. */
const FAMILY_DEFAULTS: Record<ModelType, { max_position_embeddings: number; head_dim?: number }> = {
  llama: { max_position_embeddings: 2048 },
  qwen2: { max_position_embeddings: 32768 },
  // Qwen3Config defaults head_dim to 128 rather than hidden_size / num_attention_heads.
  qwen3: { max_position_embeddings: 32768, head_dim: 128 },
};

/**
 * Qwen2/Qwen3 sliding-window attention: which layers use it follows transformers (layer_types, or
 * every layer from max_window_layers on when use_sliding_window is set). rmt's attention has no
 * window, so a window that could hide a key (narrower than max_position_embeddings) is refused;
 * a wider one never hides a key of an accepted sequence and is ignored.
 */
function checkSlidingWindow(
  r: Record<string, unknown>,
  source: string,
  layers: number,
  maxPositions: number,
): void {
  const use = bool(r, source, 'use_sliding_window', false);
  const rawWindow = r.sliding_window ?? (r.sliding_window === null ? null : 4096);
  if (
    rawWindow !== null &&
    (typeof rawWindow !== 'number' || !Number.isInteger(rawWindow) || rawWindow <= 0)
  ) {
    throw new ConfigError(
      source,
      'sliding_window',
      `expected a positive integer or null, got ${JSON.stringify(rawWindow)}`,
    );
  }
  const window = use ? (rawWindow as number | null) : null;
  const fromLayer = r.max_window_layers ?? 28;
  if (typeof fromLayer !== 'number' || !Number.isInteger(fromLayer) || fromLayer < 0) {
    throw new ConfigError(
      source,
      'max_window_layers',
      `expected a non-negative integer, got ${JSON.stringify(fromLayer)}`,
    );
  }
  let types: string[];
  if (r.layer_types === undefined || r.layer_types === null) {
    types = Array.from({ length: layers }, (_, i) =>
      window !== null && i >= fromLayer ? 'sliding_attention' : 'full_attention',
    );
  } else {
    if (!Array.isArray(r.layer_types) || r.layer_types.length !== layers) {
      throw new ConfigError(source, 'layer_types', `expected a list of ${layers} layer types`);
    }
    types = r.layer_types as string[];
  }
  types.forEach((t, i) => {
    if (t === 'full_attention') return;
    if (t !== 'sliding_attention') {
      throw new ConfigError(
        source,
        `layer_types[${i}]`,
        `${JSON.stringify(t)} is not implemented; expected full_attention`,
      );
    }
    if (window === null) {
      throw new ConfigError(
        source,
        `layer_types[${i}]`,
        'sliding_attention without a window (use_sliding_window is false or sliding_window is null)',
      );
    }
    if (window < maxPositions) {
      throw new ConfigError(
        source,
        'use_sliding_window',
        `sliding-window attention (window ${window} < max_position_embeddings ${maxPositions}, from layer ${i}) is not implemented`,
      );
    }
  });
}

/**
 * Reads and validates a parsed `config.json`. `source` names the file in errors. Every field that
 * changes the computation is read (defaults as in transformers' configuration classes) or refused
 * by name; see docs/model-config.md.
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
  const family = FAMILY_DEFAULTS[model_type];
  const act = r.hidden_act ?? 'silu';
  if (act !== 'silu') {
    throw new ConfigError(
      source,
      'hidden_act',
      `${JSON.stringify(act)} is not implemented; rmt implements silu`,
    );
  }
  const dropout = r.attention_dropout ?? 0;
  if (dropout !== 0) {
    throw new ConfigError(
      source,
      'attention_dropout',
      `attention dropout is not implemented; expected 0, got ${JSON.stringify(dropout)}`,
    );
  }
  if (r.quantization_config != null) {
    throw new ConfigError(
      source,
      'quantization_config',
      'quantized checkpoints are not implemented; use unquantized weights',
    );
  }
  if (model_type === 'llama' && bool(r, source, 'mlp_bias', false)) {
    throw new ConfigError(source, 'mlp_bias', 'biases on the MLP projections are not implemented');
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
    family.head_dim ??
    (hidden_size % num_attention_heads === 0 ? hidden_size / num_attention_heads : undefined);
  const head_dim = int(r, source, 'head_dim', headDimDefault);
  if (head_dim % 2 !== 0)
    throw new ConfigError(source, 'head_dim', `RoPE needs an even head_dim, got ${head_dim}`);
  const num_hidden_layers = int(r, source, 'num_hidden_layers');
  const max_position_embeddings = int(r, source, 'max_position_embeddings', family.max_position_embeddings);
  if (model_type !== 'llama') checkSlidingWindow(r, source, num_hidden_layers, max_position_embeddings);
  const rope = parseRope(r, source, max_position_embeddings);
  if (rope.rope_scaling?.rope_type === 'dynamic' && head_dim < 4) {
    throw new ConfigError(source, 'head_dim', `dynamic NTK RoPE needs head_dim >= 4, got ${head_dim}`);
  }
  const vocab_size = int(r, source, 'vocab_size');
  const eos = r.eos_token_id;
  return {
    model_type,
    vocab_size,
    hidden_size,
    intermediate_size: int(r, source, 'intermediate_size'),
    num_hidden_layers,
    num_attention_heads,
    num_key_value_heads,
    head_dim,
    rms_norm_eps: num(r, source, 'rms_norm_eps', 1e-6),
    rope_theta: rope.rope_theta,
    rope_scaling: rope.rope_scaling,
    tie_word_embeddings: bool(r, source, 'tie_word_embeddings', false),
    max_position_embeddings,
    attention_bias: bool(r, source, 'attention_bias', false),
    bos_token_id: tokenId(r.bos_token_id, source, 'bos_token_id'),
    eos_token_id: Array.isArray(eos)
      ? eos.map((e, i) => tokenId(e, source, `eos_token_id[${i}]`) as number)
      : tokenId(eos, source, 'eos_token_id'),
    pad_token_id: tokenId(r.pad_token_id, source, 'pad_token_id'),
  };
}

/**
 * The `config.json` object transformers expects for this configuration: RoPE in both layouts
 * (`rope_parameters` for transformers 5, `rope_theta`/`rope_scaling` for 4.x), read back unchanged
 * by parseModelConfig.
 */
export function toHfConfig(c: ModelConfig): Record<string, unknown> {
  const { rope_theta, rope_scaling, ...rest } = c;
  return {
    architectures: [ARCHITECTURES[c.model_type]],
    ...rest,
    ...ropeToHf({ rope_theta, rope_scaling: rope_scaling ?? null }),
    hidden_act: 'silu',
    attention_dropout: 0,
    initializer_range: 0.02,
    use_cache: true,
    torch_dtype: 'float32',
    ...(c.model_type === 'llama' ? { mlp_bias: false, pretraining_tp: 1 } : {}),
    ...(c.model_type !== 'llama'
      ? { use_sliding_window: false, sliding_window: null, max_window_layers: c.num_hidden_layers }
      : {}),
  };
}
