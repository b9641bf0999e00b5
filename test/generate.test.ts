import test from 'ava';
import { ReferenceBackend } from '../shared/kernels/reference.js';
import { padBatch } from '../shared/model/batch.js';
import { generate } from '../shared/model/generate.js';
import { logSoftmax, sampleToken, topKEntropy } from '../shared/model/sampling.js';
import { Rng } from '../shared/util/rng.js';
import { makeDecoder, randomParams, TINY_CONFIGS } from './helpers/tiny-models.js';

/**
 * The KV-cache decoder must reproduce a full causal forward over prompt + generated tokens.
 * Tolerance on the reference backend (float64): 1e-9 absolute on log-probabilities.
 */
for (const [name, config] of Object.entries(TINY_CONFIGS)) {
  test(`KV-cache generation matches the full forward: ${name}`, async (t) => {
    const be = new ReferenceBackend();
    const model = makeDecoder(be, config, randomParams(config, 5));
    const rng = new Rng(1);
    const prompts = [[1, 2, 3, 4, 5], [6], [7, 8, 9]];
    const gens = await generate(model, prompts, {
      temperature: 1,
      topK: 0,
      topP: 1,
      maxNewTokens: [6, 4, 5],
      stopTokens: [],
      rng,
    });
    t.deepEqual(
      gens.map((g) => g.tokens.length),
      [6, 4, 5],
    );
    for (let b = 0; b < prompts.length; b++) {
      const full = [...prompts[b], ...gens[b].tokens];
      const batch = padBatch([full], 0);
      const tape = await model.forward(batch);
      const logits = await be.read(await model.logits(tape));
      const V = config.vocab_size;
      gens[b].tokens.forEach((tok, i) => {
        const row = prompts[b].length - 1 + i;
        const lp = logSoftmax(logits.subarray(row * V, (row + 1) * V));
        t.true(Math.abs(lp[tok] - gens[b].logprobs[i]) < 1e-9, `seq ${b} token ${i}`);
      });
    }
  });
}

test('generation is reproducible from the seed and stops at a stop token', async (t) => {
  const config = TINY_CONFIGS['qwen3-gqa'];
  const be = new ReferenceBackend();
  const model = makeDecoder(be, config, randomParams(config, 9));
  const opts = (seed: number) => ({
    temperature: 0.8,
    topK: 5,
    topP: 0.9,
    maxNewTokens: 8,
    stopTokens: [],
    rng: new Rng(seed),
  });
  const a = await generate(model, [[1, 2], [3]], opts(42));
  const b = await generate(model, [[1, 2], [3]], opts(42));
  t.deepEqual(a, b);
  const stopAt = a[0].tokens[2];
  const c = await generate(model, [[1, 2], [3]], { ...opts(42), stopTokens: [stopAt] });
  const first = c[0].tokens.indexOf(stopAt);
  t.is(c[0].tokens.length, first + 1);
  t.is(c[0].finishReason, 'stop');
});

test('greedy, top-k = 1 and a tiny top-p all pick the argmax', (t) => {
  const logits = [0.1, 2.5, -1, 2.4, 0];
  const rng = new Rng(0);
  for (const p of [
    { temperature: 0, topK: 0, topP: 1 },
    { temperature: 1, topK: 1, topP: 1 },
    { temperature: 1, topK: 0, topP: 1e-6 },
  ]) {
    t.is(sampleToken(logits, p, rng).token, 1);
  }
});

test('greedy picks the first argmax of logSoftmax below `usable` and reports its value exactly', (t) => {
  const rng = new Rng(17);
  for (let trial = 0; trial < 200; trial++) {
    const V = 1 + (trial % 37);
    // coarse values make ties; a few -Infinity (masked) entries
    const logits = Array.from({ length: V }, () =>
      rng.next() < 0.1 ? -Infinity : Math.round(rng.next() * 8) / 2,
    );
    const usable = 1 + Math.floor(rng.next() * V);
    const lp = logSoftmax(logits);
    let best = 0;
    for (let i = 1; i < usable; i++) if (lp[i] > lp[best]) best = i;
    const got = sampleToken(logits, { temperature: 0, topK: 0, topP: 1 }, rng, usable);
    t.deepEqual(got, { token: best, logprob: lp[best] }, `trial ${trial}`);
  }
});

test('sampling follows the temperature-scaled distribution', (t) => {
  const logits = [1, 0, -1, 0.5];
  const temperature = 0.7;
  const probs = Array.from(logSoftmax(logits, temperature), Math.exp);
  const rng = new Rng(123);
  const n = 40000;
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < n; i++) counts[sampleToken(logits, { temperature, topK: 0, topP: 1 }, rng).token]++;
  // 5 standard errors of a binomial proportion.
  for (const [i, p] of probs.entries()) {
    t.true(Math.abs(counts[i] / n - p) < 5 * Math.sqrt((p * (1 - p)) / n), `token ${i}`);
  }
});

test('top-k entropy: uniform over k is log k, a point mass is 0', (t) => {
  const uniform = new Array(50).fill(0);
  t.true(Math.abs(topKEntropy(uniform, 16) - Math.log(16)) < 1e-12);
  const peaked = new Array(50).fill(0);
  peaked[3] = 1000;
  t.true(topKEntropy(peaked, 16) < 1e-12);
  // Two equally likely candidates far above the rest: log 2 whatever k.
  const two = new Array(50).fill(-100);
  two[1] = 5;
  two[7] = 5;
  t.true(Math.abs(topKEntropy(two, 16) - Math.log(2)) < 1e-9);
});

test('topKEntropy leaves out rows beyond the usable vocabulary', (t) => {
  // Two real ids equally likely, and a padded row far more likely than both: the padded row must
  // neither enter the top k nor take mass from the normalisation.
  const logits = [0, 0, 10];
  t.true(Math.abs(topKEntropy(logits, 16, 2) - Math.log(2)) < 1e-12);
  t.true(topKEntropy(logits, 16) < Math.log(2) - 0.1);
  t.throws(() => topKEntropy(logits, 16, 4), { instanceOf: RangeError });
  t.throws(() => topKEntropy(logits, 16, 0), { instanceOf: RangeError });
});
