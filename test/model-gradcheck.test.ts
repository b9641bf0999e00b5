import test from 'ava';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { lossAndGrad, lossOnly } from '../shared/model/loss.js';
import { paramSpecs } from '../shared/model/params.js';
import { Rng } from '../shared/util/rng.js';
import { makeDecoder, raggedBatch, randomParams, TINY_CONFIGS } from './helpers/tiny-models.js';

/**
 * Analytic gradients of the whole decoder against central finite differences, in float64 on the
 * reference backend. Tolerance: |analytic - numeric| <= 1e-6 * max(1, |numeric|) with h = 1e-5
 * (truncation error O(h^2) ~ 1e-10, rounding ~ 1e-16 / h ~ 1e-11).
 */
const H = 1e-5;
const TOL = 1e-6;

for (const [name, config] of Object.entries(TINY_CONFIGS)) {
  test(`finite differences match backward: ${name}`, async (t) => {
    const be = new ReferenceBackend();
    const host = randomParams(config, 7);
    const { batch, targets } = raggedBatch(config, 11);
    const model = makeDecoder(be, config, host);
    const { grads } = await lossAndGrad(model, batch, targets);
    const rng = new Rng(3);
    let checked = 0;
    for (const spec of paramSpecs(config)) {
      const g = (await be.read(grads.get(spec.name)!)) as Float64Array;
      const p = host.get(spec.name)!;
      for (let trial = 0; trial < 3; trial++) {
        const i = rng.int(p.length);
        const orig = p[i];
        const at = async (v: number) => {
          p[i] = v;
          const m = makeDecoder(be, config, host);
          return (await lossOnly(m, batch, targets)).loss;
        };
        const numeric = ((await at(orig + H)) - (await at(orig - H))) / (2 * H);
        p[i] = orig;
        const err = Math.abs(g[i] - numeric);
        t.true(
          err <= TOL * Math.max(1, Math.abs(numeric)),
          `${spec.name}[${i}]: analytic ${g[i]} numeric ${numeric}`,
        );
        checked++;
      }
    }
    t.log(`${checked} gradient entries checked`);
  });
}
