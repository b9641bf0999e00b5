import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { FIXTURES, relErr, TORCH_TOL } from '../scripts/torch_ref/fixtures.js';
import type { Backend } from '../shared/kernels/backend.js';
import { createBackend } from '../shared/kernels/index.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import type { TokenBatch } from '../shared/model/batch.js';
import { loadCheckpoint } from '../shared/model/checkpoint.js';
import type { ModelConfig } from '../shared/model/config.js';
import { Decoder } from '../shared/model/decoder.js';
import { lossAndGrad } from '../shared/model/loss.js';
import { paramSpecs } from '../shared/model/params.js';
import { ropeFrequenciesFor } from '../shared/model/rope.js';
import { readSafetensorsFloat64 } from '../shared/model/safetensors.js';
import { uploadParams } from '../shared/model/weights.js';
import { testBackends } from './helpers/backends.js';

/**
 * Checkpoints with each RoPE type, in the transformers 5 layout (rope_parameters) and the 4.x one
 * (rope_theta + rope_scaling, legacy `type` key included), against the float64 PyTorch reference
 * (scripts/torch_ref/make_rope_fixtures.py, which computes the frequencies in Python as transformers
 * does): inverse frequencies and attention scale, logits, loss and every gradient, at positions in
 * the thousands so the scaled frequencies matter. Tolerances: TORCH_TOL (scripts/torch_ref/fixtures.ts);
 * the frequencies to 1e-12 relative.
 */
const DIR = join(FIXTURES, '..', 'torch-ref-rope');
const NAMES = [
  'qwen3-v5-default',
  'qwen3-v5-yarn',
  'qwen3-v5-yarn-mscale',
  'llama-v4-llama3',
  'qwen2-v4-linear-type',
  'llama-v4-dynamic',
];

function load(name: string) {
  const dir = join(DIR, name);
  const inp = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as Record<string, number[][]>;
  const out = JSON.parse(readFileSync(join(dir, 'outputs.json'), 'utf8')) as {
    loss: number;
    seq_len: number;
    attention_scaling: number;
  };
  const batch: TokenBatch = {
    batch: inp.input_ids.length,
    seqLen: inp.input_ids[0].length,
    ids: Int32Array.from(inp.input_ids.flat()),
    mask: Uint8Array.from(inp.attention_mask.flat()),
    positions: Int32Array.from(inp.position_ids.flat()),
  };
  const targets = {
    targets: Int32Array.from(inp.labels.flat().map((l) => (l < 0 ? -1 : l))),
    weights: Float64Array.from(inp.loss_weights.flat()),
  };
  return {
    ckpt: loadCheckpoint(dir),
    batch,
    targets,
    out,
    expected: readSafetensorsFloat64(join(dir, 'outputs.safetensors')),
  };
}

async function logitsOf(
  be: Backend,
  config: ModelConfig,
  params: Map<string, Float32Array>,
  batch: TokenBatch,
) {
  const model = new Decoder(config, be, uploadParams(be, params));
  const tape = await model.forward(batch);
  const logits = await be.read(await model.logits(tape));
  model.releaseTape(tape);
  return logits;
}

async function check(t: import('ava').ExecutionContext, be: Backend, name: string): Promise<void> {
  const f = load(name);
  const tol = be.precision === 'f64' ? TORCH_TOL.f64 : TORCH_TOL.f32;
  const config = f.ckpt.config;

  const freq = ropeFrequenciesFor(config, f.out.seq_len);
  const want = f.expected.get('rope.inv_freq')!.data;
  for (let i = 0; i < want.length; i++) {
    t.true(
      Math.abs(freq.invFreq[i] - want[i]) <= 1e-12 * want[i],
      `inv_freq[${i}] ${freq.invFreq[i]} vs ${want[i]}`,
    );
  }
  t.true(Math.abs(freq.attentionScale - f.out.attention_scaling) <= 1e-12, 'attention scaling');

  const logits = await logitsOf(be, config, f.ckpt.params, f.batch);
  const eLogits = f.expected.get('logits')!.data;
  t.true(relErr(logits, eLogits) <= tol.logits, `logits: ${relErr(logits, eLogits)}`);

  const model = new Decoder(config, be, uploadParams(be, f.ckpt.params));
  const { loss, grads } = await lossAndGrad(model, f.batch, f.targets);
  t.true(
    Math.abs(loss - f.out.loss) / Math.max(1, f.out.loss) <= tol.logits,
    `loss ${loss} vs ${f.out.loss}`,
  );
  for (const s of paramSpecs(config)) {
    const g = await be.read(grads.get(s.name)!);
    const e = f.expected.get(`grad.${s.name}`)!.data;
    t.true(relErr(g, e) <= tol.grads, `grad ${s.name}: ${relErr(g, e)}`);
  }

  // The fixture tells the variant apart: plain RoPE at theta 10000 (what a reader of rope_theta alone
  // would run) is far off.
  if (be.precision === 'f64') {
    const plain = { ...config, rope_theta: 10000, rope_scaling: null, max_position_embeddings: 1 << 20 };
    const wrong = await logitsOf(be, plain, f.ckpt.params, f.batch);
    t.true(relErr(wrong, eLogits) > 1e-3, `plain RoPE is within ${relErr(wrong, eLogits)}`);
  }
}

const backends = await testBackends();
for (const name of NAMES) {
  test(`RoPE matches PyTorch: ${name} on reference`, (t) => check(t, new ReferenceBackend(), name));
  for (const b of backends) {
    test(`RoPE matches PyTorch: ${name} on ${b}`, async (t) => {
      const be = await createBackend(b);
      try {
        await check(t, be, name);
      } finally {
        await be.dispose();
      }
    });
  }
}
