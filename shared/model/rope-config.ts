import { ConfigError } from './config-error.js';

/**
 * The RoPE section of a Hugging Face config.json, in either layout transformers reads:
 * - transformers 4.x: a top-level `rope_theta` and an optional `rope_scaling` dict (whose type key
 *   is `rope_type`, or `type` in older files);
 * - transformers 5.x: one `rope_parameters` dict holding `rope_theta` and `rope_type` too.
 * As transformers does, a non-empty `rope_scaling` takes the place of `rope_parameters`, and
 * `rope_theta` inside the dict wins over the top-level one (default 10000).
 */
export const ROPE_TYPES = ['default', 'linear', 'dynamic', 'yarn', 'llama3'] as const;
export type RopeType = (typeof ROPE_TYPES)[number];

/** Every value resolved (no defaults left), so that it writes back and reads again unchanged. */
export type RopeScaling =
  | { rope_type: 'linear'; factor: number }
  | { rope_type: 'dynamic'; factor: number }
  | {
      rope_type: 'llama3';
      factor: number;
      low_freq_factor: number;
      high_freq_factor: number;
      original_max_position_embeddings: number;
    }
  | {
      rope_type: 'yarn';
      factor: number;
      original_max_position_embeddings: number;
      attention_factor: number;
      beta_fast: number;
      beta_slow: number;
      truncate: boolean;
    };

export const DEFAULT_ROPE_THETA = 10000;

/** Keys each type reads besides rope_type/type/rope_theta/partial_rotary_factor. */
const TYPE_KEYS: Record<RopeType, readonly string[]> = {
  default: [],
  linear: ['factor'],
  dynamic: ['factor'],
  llama3: ['factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'],
  yarn: [
    'factor',
    'original_max_position_embeddings',
    'attention_factor',
    'beta_fast',
    'beta_slow',
    'mscale',
    'mscale_all_dim',
    'truncate',
  ],
};
const COMMON_KEYS = ['rope_type', 'type', 'rope_theta', 'partial_rotary_factor'];
/** Per-layer-type nesting (Gemma-style `{full_attention: {...}, sliding_attention: {...}}`). */
const LAYER_TYPE_KEYS = ['full_attention', 'sliding_attention'];

type Dict = Record<string, unknown>;

const isDict = (v: unknown): v is Dict => v !== null && typeof v === 'object' && !Array.isArray(v);

function dictField(r: Dict, source: string, field: string): Dict | null {
  const v = r[field];
  if (v === undefined || v === null) return null;
  if (!isDict(v)) throw new ConfigError(source, field, 'expected an object or null');
  if (Object.keys(v).some((k) => LAYER_TYPE_KEYS.includes(k))) {
    throw new ConfigError(source, field, 'RoPE parameters per layer type are not implemented');
  }
  return Object.keys(v).length > 0 ? v : null;
}

function positive(v: unknown, source: string, field: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new ConfigError(source, field, `expected a positive number, got ${JSON.stringify(v)}`);
  }
  return v;
}

function positiveInt(v: unknown, source: string, field: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new ConfigError(source, field, `expected a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** A scaling factor: transformers only warns below 1, where every variant shrinks positions instead. */
function factorOf(v: unknown, source: string, field: string): number {
  const f = positive(v, source, field);
  if (f < 1) throw new ConfigError(source, field, `expected a factor >= 1, got ${f}`);
  return f;
}

/** transformers' YaRN attention-scale formula (0.1 * mscale * ln(scale) + 1, and 1 for scale <= 1). */
function yarnMscale(scale: number, mscale = 1): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

export interface ParsedRope {
  rope_theta: number;
  rope_scaling: RopeScaling | null;
}

/**
 * Reads the RoPE fields of a parsed config.json `r`; `maxPositionEmbeddings` is the model's
 * (already defaulted) max_position_embeddings, the default original length of llama3 and yarn.
 */
export function parseRope(r: Dict, source: string, maxPositionEmbeddings: number): ParsedRope {
  const scaling = dictField(r, source, 'rope_scaling');
  const params = dictField(r, source, 'rope_parameters');
  const field = scaling ? 'rope_scaling' : 'rope_parameters';
  const d: Dict = scaling ?? params ?? {};
  if (scaling && params) {
    // Both present: transformers silently takes rope_scaling; refuse a disagreement instead.
    for (const k of Object.keys(scaling)) {
      if (k in params && JSON.stringify(params[k]) !== JSON.stringify(scaling[k])) {
        throw new ConfigError(
          source,
          `rope_scaling.${k}`,
          `disagrees with rope_parameters.${k} (${JSON.stringify(scaling[k])} vs ${JSON.stringify(params[k])}); keep one of them`,
        );
      }
    }
  }
  const at = (k: string) => `${field}.${k}`;

  // The dict's rope_theta wins, then the top-level one; a disagreement between any two is refused.
  const thetas: [string, unknown][] = [
    [at('rope_theta'), d.rope_theta],
    ['rope_parameters.rope_theta', scaling ? params?.rope_theta : undefined],
    ['rope_theta', r.rope_theta],
  ];
  let rope_theta = DEFAULT_ROPE_THETA;
  let thetaFrom = '';
  for (const [where, v] of thetas) {
    if (v === undefined || v === null) continue;
    const theta = positive(v, source, where);
    if (!thetaFrom) {
      rope_theta = theta;
      thetaFrom = where;
    } else if (theta !== rope_theta) {
      throw new ConfigError(
        source,
        where,
        `${theta} disagrees with ${thetaFrom} ${rope_theta}; keep one of them`,
      );
    }
  }
  if (scaling && thetaFrom === 'rope_parameters.rope_theta' && r.rope_theta == null) {
    // transformers drops rope_parameters when rope_scaling is set and would use the default theta.
    throw new ConfigError(
      source,
      'rope_theta',
      'missing beside rope_scaling; rope_parameters.rope_theta alone is ignored by transformers',
    );
  }

  if (d.rope_type !== undefined && d.type !== undefined && d.rope_type !== d.type) {
    throw new ConfigError(source, at('type'), `disagrees with ${at('rope_type')}`);
  }
  const type = d.rope_type ?? d.type ?? 'default';
  if (typeof type !== 'string' || !(ROPE_TYPES as readonly string[]).includes(type)) {
    throw new ConfigError(
      source,
      at(d.rope_type !== undefined ? 'rope_type' : 'type'),
      `RoPE type ${JSON.stringify(type)} is not implemented; rmt implements ${ROPE_TYPES.join(', ')}`,
    );
  }
  const ropeType = type as RopeType;
  for (const k of Object.keys(d)) {
    if (!COMMON_KEYS.includes(k) && !TYPE_KEYS[ropeType].includes(k)) {
      throw new ConfigError(source, at(k), `not a parameter of rope_type "${ropeType}"; remove it`);
    }
  }
  for (const [where, v] of [
    [at('partial_rotary_factor'), d.partial_rotary_factor],
    ['partial_rotary_factor', r.partial_rotary_factor],
  ] as const) {
    if (v !== undefined && v !== null && v !== 1) {
      throw new ConfigError(
        source,
        where,
        `partial rotary embeddings are not implemented (got ${JSON.stringify(v)})`,
      );
    }
  }

  // transformers lets a top-level original_max_position_embeddings win over the dict's (Phi-3's layout).
  const original = (): number => {
    if (r.original_max_position_embeddings !== undefined && r.original_max_position_embeddings !== null) {
      return positiveInt(r.original_max_position_embeddings, source, 'original_max_position_embeddings');
    }
    const v = d.original_max_position_embeddings;
    if (v === undefined || v === null) return maxPositionEmbeddings;
    return positiveInt(v, source, at('original_max_position_embeddings'));
  };

  switch (ropeType) {
    case 'default':
      return { rope_theta, rope_scaling: null };
    case 'linear':
    case 'dynamic':
      return {
        rope_theta,
        rope_scaling: { rope_type: ropeType, factor: factorOf(d.factor, source, at('factor')) },
      };
    case 'llama3': {
      const low = positive(d.low_freq_factor, source, at('low_freq_factor'));
      const high = positive(d.high_freq_factor, source, at('high_freq_factor'));
      if (high <= low) {
        throw new ConfigError(
          source,
          at('high_freq_factor'),
          `must exceed low_freq_factor ${low}, got ${high}`,
        );
      }
      return {
        rope_theta,
        rope_scaling: {
          rope_type: 'llama3',
          factor: factorOf(d.factor, source, at('factor')),
          low_freq_factor: low,
          high_freq_factor: high,
          original_max_position_embeddings: original(),
        },
      };
    }
    case 'yarn': {
      const orig = original();
      // transformers' yarn initialiser could derive a missing factor, but its config validation
      // rejects a yarn dict without one; rmt requires it too.
      const factor = factorOf(d.factor, source, at('factor'));
      const optNum = (k: string): number | null => {
        const v = d[k];
        if (v === undefined || v === null) return null;
        if (typeof v !== 'number' || !Number.isFinite(v)) {
          throw new ConfigError(source, at(k), `expected a finite number, got ${JSON.stringify(v)}`);
        }
        return v;
      };
      const mscale = optNum('mscale');
      const mscaleAll = optNum('mscale_all_dim');
      const given = optNum('attention_factor');
      if (given !== null && given <= 0) {
        throw new ConfigError(source, at('attention_factor'), `expected a positive number, got ${given}`);
      }
      const attention_factor =
        given ??
        (mscale && mscaleAll
          ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAll)
          : yarnMscale(factor));
      // transformers reads these as `value or default`, so 0 also means the default.
      const beta_fast = optNum('beta_fast') || 32;
      const beta_slow = optNum('beta_slow') || 1;
      const truncate = d.truncate ?? true;
      if (typeof truncate !== 'boolean') throw new ConfigError(source, at('truncate'), 'expected a boolean');
      if (!Number.isFinite(attention_factor) || attention_factor <= 0) {
        throw new ConfigError(
          source,
          at('mscale'),
          `gives a non-positive attention factor ${attention_factor}`,
        );
      }
      return {
        rope_theta,
        rope_scaling: {
          rope_type: 'yarn',
          factor,
          original_max_position_embeddings: orig,
          attention_factor,
          beta_fast,
          beta_slow,
          truncate,
        },
      };
    }
  }
}

/**
 * The RoPE fields written to config.json: `rope_parameters` for transformers 5.x and the top-level
 * `rope_theta` plus `rope_scaling` (without rope_theta) that transformers 4.x reads. Both describe the
 * same rotation, so parseRope reads either back unchanged.
 */
export function ropeToHf(p: ParsedRope): Dict {
  const scaling = p.rope_scaling ? { ...p.rope_scaling } : null;
  return {
    rope_theta: p.rope_theta,
    rope_scaling: scaling,
    rope_parameters: { rope_theta: p.rope_theta, ...(scaling ?? { rope_type: 'default' }) },
  };
}
