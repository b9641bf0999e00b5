/**
 * GPU-host check without ava: finds the WebGPU adapter (prints what Dawn reports), then runs what
 * test/torch-reference.test.ts runs for one backend (default webgpu): logits, loss, every gradient
 * and 10 AdamW steps of the committed fixtures against the PyTorch float64 reference, with the test's
 * float32 tolerances.
 *
 * Usage: tsx scripts/gpu/check-webgpu.ts [--backend webgpu] [--allow-software] [--out result.json]
 * Exit status: 0 all checks passed; 1 a check failed; 2 no (hardware) adapter.
 */
import { writeFileSync } from 'node:fs';
import type { Backend, BackendName } from '../../shared/kernels/backend.js';
import { createBackend, setupWebgpu } from '../../shared/kernels/index.js';
import { AdamW } from '../../shared/model/adamw.js';
import { Decoder } from '../../shared/model/decoder.js';
import { lossAndGrad } from '../../shared/model/loss.js';
import { learningRate } from '../../shared/model/lr-schedule.js';
import { paramSpecs } from '../../shared/model/params.js';
import { uploadParams } from '../../shared/model/weights.js';
import { FIXTURE_NAMES, loadTorchFixture, relErr, TORCH_TOL } from '../torch_ref/fixtures.js';

const TOL = TORCH_TOL.f32;

interface Check {
  fixture: string;
  what: string;
  err: number;
  tol: number;
  ok: boolean;
}

async function checkFixture(be: Backend, fixture: string, checks: Check[]): Promise<void> {
  const f = loadTorchFixture(fixture);
  const { batch, targets, expected } = f;
  const add = (what: string, err: number, tol: number) => {
    checks.push({ fixture, what, err, tol, ok: err <= tol });
  };
  const ckpt = f.checkpoint;

  const model = new Decoder(ckpt.config, be, uploadParams(be, ckpt.params));
  const tape = await model.forward(batch);
  const logits = await be.read(await model.logits(tape));
  model.releaseTape(tape);
  add('logits', relErr(logits, expected.get('logits')!.data), TOL.logits);

  const { loss, grads } = await lossAndGrad(model, batch, targets);
  add('loss', Math.abs(loss - f.loss) / Math.max(1, f.loss), TOL.logits);
  const specs = paramSpecs(ckpt.config);
  let worstGrad = 0;
  for (const s of specs) {
    const e = relErr(await be.read(grads.get(s.name)!), expected.get(`grad.${s.name}`)!.data);
    worstGrad = Math.max(worstGrad, e);
    if (e > TOL.grads) add(`grad ${s.name}`, e, TOL.grads);
  }
  add(`gradients (worst of ${specs.length})`, worstGrad, TOL.grads);

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
  let worstLoss = 0;
  for (let step = 0; step < o.steps; step++) {
    const r = await lossAndGrad(fresh, batch, targets);
    const want = f.losses[step];
    worstLoss = Math.max(worstLoss, Math.abs(r.loss - want) / Math.max(1, want));
    await opt.update(fresh.params, r.grads, learningRate(schedule, step));
  }
  add(`losses over ${o.steps} AdamW steps`, worstLoss, TOL.losses);
  let worstParam = 0;
  for (const s of specs) {
    const e = relErr(await be.read(fresh.params.get(s.name)!), expected.get(`after_steps.${s.name}`)!.data);
    worstParam = Math.max(worstParam, e);
  }
  add(`parameters after ${o.steps} steps`, worstParam, TOL.params);
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const name = (argv.includes('--backend') ? argv[argv.indexOf('--backend') + 1] : 'webgpu') as BackendName;
  const out = argv.includes('--out') ? argv[argv.indexOf('--out') + 1] : null;
  const allowSoftware = argv.includes('--allow-software');
  const summary: Record<string, unknown> = { backend: name };
  if (name === 'webgpu') {
    const setup = await setupWebgpu();
    summary.webgpu = setup;
    console.log(`webgpu: ${JSON.stringify(setup)}`);
    if (!setup.ok || (setup.software && !allowSoftware)) {
      console.error(`no ${setup.ok ? 'hardware ' : ''}WebGPU adapter: ${setup.reason}`);
      if (out) writeFileSync(out, `${JSON.stringify(summary, null, 2)}\n`);
      return 2;
    }
  }
  const be = await createBackend(name);
  const checks: Check[] = [];
  const t0 = performance.now();
  try {
    for (const fixture of FIXTURE_NAMES) await checkFixture(be, fixture, checks);
  } finally {
    await be.dispose();
  }
  summary.seconds = (performance.now() - t0) / 1000;
  summary.checks = checks;
  for (const c of checks) {
    console.log(`${c.ok ? 'ok  ' : 'FAIL'} ${c.fixture} ${c.what}: ${c.err.toExponential(2)} (tol ${c.tol})`);
  }
  const failed = checks.filter((c) => !c.ok).length;
  summary.passed = failed === 0;
  console.log(failed === 0 ? `all ${checks.length} checks passed on ${name}` : `${failed} checks FAILED`);
  if (out) writeFileSync(out, `${JSON.stringify(summary, null, 2)}\n`);
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code), // Dawn keeps the process alive otherwise
  (e) => {
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    process.exit(1);
  },
);
