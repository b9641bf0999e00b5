import test from 'ava';
import { FIXTURE_NAMES, loadTorchFixture, relErr, TORCH_TOL } from '../scripts/torch_ref/fixtures.js';
import type { Backend } from '../shared/kernels/backend.js';
import { createBackend } from '../shared/kernels/index.js';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { AdamW } from '../shared/model/adamw.js';
import { Decoder } from '../shared/model/decoder.js';
import { lossAndGrad } from '../shared/model/loss.js';
import { learningRate } from '../shared/model/lr-schedule.js';
import { paramSpecs } from '../shared/model/params.js';
import { uploadParams } from '../shared/model/weights.js';
import { testBackends } from './helpers/backends.js';

/**
 * The TypeScript decoder against the PyTorch float64 reference (scripts/torch_ref), llm.c's
 * test_gpt2 in spirit: logits, loss, every parameter gradient, and the loss over 10 AdamW steps.
 * Tolerances: TORCH_TOL in scripts/torch_ref/fixtures.ts.
 */
async function check(t: import('ava').ExecutionContext, be: Backend, fixture: string): Promise<void> {
  const f = loadTorchFixture(fixture);
  const { batch, targets, expected } = f;
  const tol = be.precision === 'f64' ? TORCH_TOL.f64 : TORCH_TOL.f32;
  const ckpt = f.checkpoint;
  const model = new Decoder(ckpt.config, be, uploadParams(be, ckpt.params));

  const tape = await model.forward(batch);
  const logits = await be.read(await model.logits(tape));
  model.releaseTape(tape);
  const eLogits = expected.get('logits')!.data;
  t.true(relErr(logits, eLogits) <= tol.logits, `logits: ${relErr(logits, eLogits)}`);

  const { loss, grads } = await lossAndGrad(model, batch, targets);
  t.true(Math.abs(loss - f.loss) / Math.max(1, f.loss) <= tol.logits, `loss ${loss} vs ${f.loss}`);
  const specs = paramSpecs(ckpt.config);
  for (const s of specs) {
    const g = await be.read(grads.get(s.name)!);
    const e = expected.get(`grad.${s.name}`)!.data;
    t.true(relErr(g, e) <= tol.grads, `grad ${s.name}: ${relErr(g, e)}`);
  }

  const o = f.optimizer;
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
    const want = f.losses[step];
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
for (const fixture of FIXTURE_NAMES) {
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
