import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import type { Backend } from '../shared/kernels/backend.js';
import { createBackend } from '../shared/kernels/index.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { AdamW } from '../shared/model/adamw.js';
import type { LossTargets, TokenBatch } from '../shared/model/batch.js';
import { loadCheckpoint } from '../shared/model/checkpoint.js';
import { Decoder } from '../shared/model/decoder.js';
import { lossAndGrad } from '../shared/model/loss.js';
import { learningRate } from '../shared/model/lr-schedule.js';
import { paramSpecs } from '../shared/model/params.js';
import { readSafetensorsFloat64 } from '../shared/model/safetensors.js';
import { uploadParams } from '../shared/model/weights.js';
import { testBackends } from './helpers/backends.js';

/**
 * The TypeScript decoder against the PyTorch float64 reference (scripts/torch_ref), llm.c's
 * test_gpt2 in spirit: logits, loss, every parameter gradient, and the loss over 10 AdamW steps.
 *
 * Tolerances, as max |ts - torch| / max(1, max |torch|) per tensor:
 * - float64 reference backend: 1e-9 everywhere (the same float32 weights, float64 arithmetic).
 * - float32 backends: logits and loss 1e-4, gradients 1e-3, losses along the 10 steps 1e-3,
 *   parameters after 10 steps 2e-3 (Adam divides by sqrt(v): float32 rounding in tiny gradients
 *   moves an update by up to lr, and lr is 1e-2 here).
 */
const FIXTURES = join(import.meta.dirname, 'fixtures', 'torch-ref');
const TOL = {
  f64: { logits: 1e-9, grads: 1e-9, losses: 1e-9, params: 1e-9 },
  f32: { logits: 1e-4, grads: 1e-3, losses: 1e-3, params: 2e-3 },
};

interface Inputs {
  input_ids: number[][];
  attention_mask: number[][];
  position_ids: number[][];
  labels: number[][];
  loss_weights: number[][];
  optimizer: {
    lr_max: number;
    lr_min: number;
    warmup: number;
    steps: number;
    betas: [number, number];
    eps: number;
    weight_decay: number;
    max_grad_norm: number;
  };
}

function fixtureBatch(inp: Inputs): { batch: TokenBatch; targets: LossTargets } {
  const B = inp.input_ids.length;
  const T = inp.input_ids[0].length;
  return {
    batch: {
      batch: B,
      seqLen: T,
      ids: Int32Array.from(inp.input_ids.flat()),
      mask: Uint8Array.from(inp.attention_mask.flat()),
      positions: Int32Array.from(inp.position_ids.flat()),
    },
    targets: {
      targets: Int32Array.from(inp.labels.flat().map((l) => (l < 0 ? -1 : l))),
      weights: Float64Array.from(inp.loss_weights.flat()),
    },
  };
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0;
  let scale = 1;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

async function check(t: import('ava').ExecutionContext, be: Backend, fixture: string): Promise<void> {
  const dir = join(FIXTURES, fixture);
  const inp = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as Inputs;
  const expected = readSafetensorsFloat64(join(dir, 'outputs.safetensors'));
  const outJson = JSON.parse(readFileSync(join(dir, 'outputs.json'), 'utf8')) as {
    loss: number;
    losses: number[];
  };
  const tol = be.precision === 'f64' ? TOL.f64 : TOL.f32;
  const ckpt = loadCheckpoint(dir);
  const model = new Decoder(ckpt.config, be, uploadParams(be, ckpt.params));
  const { batch, targets } = fixtureBatch(inp);

  const tape = await model.forward(batch);
  const logits = await be.read(await model.logits(tape));
  model.releaseTape(tape);
  const eLogits = expected.get('logits')!.data;
  t.true(relErr(logits, eLogits) <= tol.logits, `logits: ${relErr(logits, eLogits)}`);

  const { loss, grads } = await lossAndGrad(model, batch, targets);
  t.true(
    Math.abs(loss - outJson.loss) / Math.max(1, outJson.loss) <= tol.logits,
    `loss ${loss} vs ${outJson.loss}`,
  );
  const specs = paramSpecs(ckpt.config);
  for (const s of specs) {
    const g = await be.read(grads.get(s.name)!);
    const e = expected.get(`grad.${s.name}`)!.data;
    t.true(relErr(g, e) <= tol.grads, `grad ${s.name}: ${relErr(g, e)}`);
  }

  const o = inp.optimizer;
  const opt = new AdamW(be, specs, {
    beta1: o.betas[0],
    beta2: o.betas[1],
    eps: o.eps,
    weightDecay: o.weight_decay,
    maxGradNorm: o.max_grad_norm,
  });
  const schedule = { lrMax: o.lr_max, lrMin: o.lr_min, warmupSteps: o.warmup, totalSteps: o.steps };
  const fresh = new Decoder(ckpt.config, be, uploadParams(be, ckpt.params));
  for (let step = 0; step < o.steps; step++) {
    const r = await lossAndGrad(fresh, batch, targets);
    const want = outJson.losses[step];
    t.true(
      Math.abs(r.loss - want) / Math.max(1, want) <= tol.losses,
      `step ${step} loss ${r.loss} vs ${want}`,
    );
    await opt.update(fresh.params, r.grads, learningRate(schedule, step));
  }
  for (const s of specs) {
    const p = await be.read(fresh.params.get(s.name)!);
    const e = expected.get(`after_steps.${s.name}`)!.data;
    t.true(relErr(p, e) <= tol.params, `after 10 steps ${s.name}: ${relErr(p, e)}`);
  }
}

const backends = await testBackends();
for (const fixture of ['qwen3-gqa', 'qwen2-tied']) {
  test(`matches PyTorch: ${fixture} on reference`, (t) => check(t, new ReferenceBackend(), fixture));
  for (const name of backends) {
    test(`matches PyTorch: ${fixture} on ${name}`, async (t) => {
      const be = await createBackend(name);
      try {
        await check(t, be, fixture);
      } finally {
        await be.dispose();
      }
    });
  }
}
