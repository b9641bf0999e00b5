import test from 'ava';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { ConfigError, type ModelConfig, parseModelConfig, toHfConfig } from '../shared/model/config.js';
import { generate } from '../shared/model/generate.js';
import { defaultInvFreq, ropeFrequencies } from '../shared/model/rope.js';
import { Rng } from '../shared/util/rng.js';
import { makeDecoder, randomParams } from './helpers/tiny-models.js';

/** A small Qwen3 config.json in transformers 5's layout (RoPE in rope_parameters, no top-level rope_theta). */
const qwen3 = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  architectures: ['Qwen3ForCausalLM'],
  model_type: 'qwen3',
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 8,
  max_position_embeddings: 4096,
  rope_parameters: { rope_theta: 1000000, rope_type: 'default' },
  use_sliding_window: false,
  sliding_window: 4096,
  max_window_layers: 28,
  layer_types: ['full_attention', 'full_attention'],
  ...extra,
});

const refused = (t: import('ava').ExecutionContext, raw: unknown, field: string) => {
  const e = t.throws(() => parseModelConfig(raw, 'ckpt/config.json'), { instanceOf: ConfigError });
  t.is(e?.field, field, e?.message);
  t.true(e?.message.startsWith(`ckpt/config.json: field "${field}"`));
};

test('rope_parameters.rope_theta is read (transformers 5 layout), not the 10000 default', (t) => {
  const c = parseModelConfig(qwen3());
  t.is(c.rope_theta, 1000000);
  t.is(c.rope_scaling, null);
  const f = ropeFrequencies(c, Int32Array.of(0, 5));
  t.deepEqual(Array.from(f.invFreq), Array.from(defaultInvFreq(8, 1000000)));
  t.notDeepEqual(Array.from(f.invFreq), Array.from(defaultInvFreq(8, 10000)));
});

test('the 4.x layout: top-level rope_theta, rope_scaling with rope_type or the legacy type key', (t) => {
  const old = qwen3({ rope_parameters: undefined, rope_theta: 500000, rope_scaling: null });
  t.is(parseModelConfig(old).rope_theta, 500000);
  const linear = parseModelConfig(
    qwen3({ rope_parameters: undefined, rope_theta: 1e6, rope_scaling: { type: 'linear', factor: 2 } }),
  );
  t.deepEqual(linear.rope_scaling, { rope_type: 'linear', factor: 2 });
  const llama3 = parseModelConfig(
    qwen3({
      rope_parameters: undefined,
      rope_scaling: {
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 1,
        high_freq_factor: 4,
        original_max_position_embeddings: 512,
      },
    }),
  );
  t.is(llama3.rope_theta, 10000);
  t.is(llama3.rope_scaling?.rope_type, 'llama3');
});

test('yarn defaults resolve as in transformers (attention factor 0.1 ln(factor) + 1, betas 32/1)', (t) => {
  const c = parseModelConfig(
    qwen3({
      rope_parameters: {
        rope_theta: 1e6,
        rope_type: 'yarn',
        factor: 4,
        original_max_position_embeddings: 1024,
      },
    }),
  );
  t.deepEqual(c.rope_scaling, {
    rope_type: 'yarn',
    factor: 4,
    original_max_position_embeddings: 1024,
    attention_factor: 0.1 * Math.log(4) + 1,
    beta_fast: 32,
    beta_slow: 1,
    truncate: true,
  });
  t.is(ropeFrequencies(c, Int32Array.of(3)).attentionScale, 0.1 * Math.log(4) + 1);
  // transformers 5's config validation requires yarn's factor (a KeyError without it).
  refused(
    t,
    qwen3({
      rope_parameters: { rope_theta: 1e6, rope_type: 'yarn', original_max_position_embeddings: 1024 },
    }),
    'rope_parameters.factor',
  );
});

test('RoPE types rmt does not implement are refused by field and value', (t) => {
  refused(
    t,
    qwen3({
      rope_parameters: { rope_theta: 1e6, rope_type: 'longrope', short_factor: [1], long_factor: [1] },
    }),
    'rope_parameters.rope_type',
  );
  refused(
    t,
    qwen3({ rope_parameters: undefined, rope_scaling: { type: 'su', factor: 2 } }),
    'rope_scaling.type',
  );
  refused(
    t,
    qwen3({ rope_parameters: { rope_theta: 1e6, rope_type: 'default', partial_rotary_factor: 0.5 } }),
    'rope_parameters.partial_rotary_factor',
  );
  refused(t, qwen3({ rope_parameters: { rope_theta: 1e6, rope_type: 'linear' } }), 'rope_parameters.factor');
  refused(
    t,
    qwen3({ rope_parameters: { rope_theta: 1e6, rope_type: 'linear', factor: 2, mrope_section: [1] } }),
    'rope_parameters.mrope_section',
  );
  refused(t, qwen3({ rope_parameters: { full_attention: { rope_theta: 1e6 } } }), 'rope_parameters');
  refused(
    t,
    qwen3({
      rope_parameters: {
        rope_theta: 1e6,
        rope_type: 'llama3',
        factor: 8,
        low_freq_factor: 4,
        high_freq_factor: 1,
      },
    }),
    'rope_parameters.high_freq_factor',
  );
});

test('the two layouts disagreeing is refused rather than silently resolved', (t) => {
  refused(t, qwen3({ rope_theta: 10000 }), 'rope_theta');
  refused(
    t,
    qwen3({
      rope_theta: 1e6,
      rope_scaling: { rope_type: 'linear', factor: 2 },
      rope_parameters: { rope_theta: 1e6, rope_type: 'linear', factor: 4 },
    }),
    'rope_scaling.factor',
  );
  refused(t, qwen3({ rope_scaling: { rope_type: 'linear', factor: 2 } }), 'rope_scaling.rope_type');
  refused(
    t,
    qwen3({ rope_scaling: { rope_type: 'linear', factor: 2 }, rope_parameters: { rope_theta: 1e6 } }),
    'rope_theta',
  );
  t.is(parseModelConfig(qwen3({ rope_theta: 1e6 })).rope_theta, 1e6);
});

test('sliding-window fields: ignored when off (as Qwen3 ships them), refused when they would mask keys', (t) => {
  t.notThrows(() => parseModelConfig(qwen3({ layer_types: undefined })));
  refused(
    t,
    qwen3({ use_sliding_window: true, sliding_window: 1024, max_window_layers: 1, layer_types: undefined }),
    'use_sliding_window',
  );
  refused(t, qwen3({ layer_types: ['full_attention', 'sliding_attention'] }), 'layer_types[1]');
  refused(t, qwen3({ layer_types: ['full_attention', 'chunked_attention'] }), 'layer_types[1]');
  refused(t, qwen3({ layer_types: ['full_attention'] }), 'layer_types');
  // A window at least max_position_embeddings wide never hides a key.
  t.notThrows(() =>
    parseModelConfig(
      qwen3({ use_sliding_window: true, sliding_window: 4096, max_window_layers: 0, layer_types: undefined }),
    ),
  );
});

test('fields that change the math: hidden_act, mlp_bias, attention_dropout refused; defaults per family', (t) => {
  refused(t, qwen3({ hidden_act: 'gelu' }), 'hidden_act');
  refused(t, qwen3({ quantization_config: { quant_method: 'fp8' } }), 'quantization_config');
  refused(t, qwen3({ attention_dropout: 0.1 }), 'attention_dropout');
  const llama = {
    ...qwen3({ model_type: 'llama', rope_parameters: undefined, layer_types: undefined }),
    head_dim: undefined,
  };
  refused(t, { ...llama, mlp_bias: true }, 'mlp_bias');
  t.is(parseModelConfig(llama).head_dim, 8);
  t.is(parseModelConfig({ ...llama, max_position_embeddings: undefined }).max_position_embeddings, 2048);
  const noHeadDim = parseModelConfig({ ...qwen3(), head_dim: undefined, max_position_embeddings: undefined });
  t.is(noHeadDim.head_dim, 128);
  t.is(noHeadDim.max_position_embeddings, 32768);
  refused(t, qwen3({ eos_token_id: [1, -2] }), 'eos_token_id[1]');
});

test('a position past max_position_embeddings is an error naming the field, except under dynamic NTK', (t) => {
  const c = parseModelConfig(qwen3({ max_position_embeddings: 16 }));
  t.notThrows(() => ropeFrequencies(c, Int32Array.of(0, 15)));
  t.throws(() => ropeFrequencies(c, Int32Array.of(3, 16)), { message: /max_position_embeddings 16/ });
  const dyn = parseModelConfig(
    qwen3({
      max_position_embeddings: 16,
      rope_parameters: { rope_theta: 1e6, rope_type: 'dynamic', factor: 2 },
    }),
  );
  const short = ropeFrequencies(dyn, Int32Array.of(0, 15));
  t.deepEqual(Array.from(short.invFreq), Array.from(defaultInvFreq(8, 1e6)));
  const long = ropeFrequencies(dyn, Int32Array.of(0, 40));
  // base * (factor * len / max - (factor - 1)) ^ (dim / (dim - 2)) with len = 41.
  const base = 1e6 * ((2 * 41) / 16 - 1) ** (8 / 6);
  t.deepEqual(Array.from(long.invFreq), Array.from(defaultInvFreq(8, base)));
});

test('toHfConfig writes both layouts and parseModelConfig reads it back unchanged, for every RoPE type', (t) => {
  const ropes = [
    { rope_theta: 1e6, rope_type: 'default' },
    { rope_theta: 1e6, rope_type: 'linear', factor: 2 },
    { rope_theta: 1e6, rope_type: 'dynamic', factor: 3 },
    {
      rope_theta: 5e5,
      rope_type: 'llama3',
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 512,
    },
    {
      rope_theta: 1e6,
      rope_type: 'yarn',
      factor: 4,
      original_max_position_embeddings: 1024,
      mscale: 2,
      mscale_all_dim: 1,
      truncate: false,
    },
  ];
  for (const rope of ropes) {
    const c: ModelConfig = parseModelConfig(qwen3({ rope_parameters: rope }));
    const hf = toHfConfig(c);
    t.is(hf.rope_theta, rope.rope_theta);
    t.like(hf.rope_parameters as object, { rope_type: rope.rope_type, rope_theta: rope.rope_theta });
    t.is(hf.rope_scaling === null, rope.rope_type === 'default');
    t.false('rope_theta' in ((hf.rope_scaling as object | null) ?? {}));
    t.deepEqual(parseModelConfig(JSON.parse(JSON.stringify(hf))), c, rope.rope_type);
    // Either layout alone gives the same configuration.
    const only5 = { ...hf, rope_theta: undefined, rope_scaling: undefined };
    const only4 = { ...hf, rope_parameters: undefined };
    t.deepEqual(parseModelConfig(only5), c);
    t.deepEqual(parseModelConfig(only4), c);
    // The learner sends the parsed config itself as JSON to rollout workers.
    t.deepEqual(parseModelConfig(JSON.parse(JSON.stringify(c))), c);
  }
});

test('generation may run past max_position_embeddings only under dynamic NTK RoPE', async (t) => {
  const o = { temperature: 0, topK: 0, topP: 1, maxNewTokens: 6, stopTokens: [], rng: new Rng(1) };
  const small = { max_position_embeddings: 8 };
  const plain = parseModelConfig(qwen3(small));
  await t.throwsAsync(
    generate(makeDecoder(new ReferenceBackend(), plain, randomParams(plain, 1)), [[1, 2, 3, 4]], o),
    {
      message: /max_position_embeddings 8/,
    },
  );
  const dyn = parseModelConfig(
    qwen3({ ...small, rope_parameters: { rope_theta: 1e6, rope_type: 'dynamic', factor: 2 } }),
  );
  const [g] = await generate(
    makeDecoder(new ReferenceBackend(), dyn, randomParams(dyn, 1)),
    [[1, 2, 3, 4]],
    o,
  );
  t.is(g.tokens.length, 6);
});
