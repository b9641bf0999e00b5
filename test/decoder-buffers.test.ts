import test from 'ava';
import type { BackendName } from '../shared/kernels/backend.js';
import { createBackend } from '../shared/kernels/index.js';
import { AdamW } from '../shared/model/adamw.js';
import { KVCache } from '../shared/model/kv-cache.js';
import { lossAndGrad } from '../shared/model/loss.js';
import { paramSpecs } from '../shared/model/params.js';
import { testBackends } from './helpers/backends.js';
import { countLiveBuffers } from './helpers/live-buffers.js';
import { makeDecoder, raggedBatch, randomParams, TINY_CONFIGS } from './helpers/tiny-models.js';

/**
 * Buffer lifetimes of the decoder: over 100 decoded tokens and 10 training steps, the number of
 * buffers made and not freed must stay where it is after the first step (the KV cache, the
 * parameters and, after the first update, the optimizer's moments). Every configuration is run, so
 * the Qwen3 q/k norms, Qwen2 biases and Llama's o_proj bias are all covered.
 */
const backends: BackendName[] = ['reference', ...(await testBackends())];

for (const name of backends) {
  for (const [model, config] of Object.entries(TINY_CONFIGS)) {
    test(`live buffers stay flat over 100 decode steps: ${name}, ${model}`, async (t) => {
      const { backend, live } = countLiveBuffers(await createBackend(name));
      const decoder = makeDecoder(backend, config, randomParams(config, 3));
      const B = 2;
      const steps = 100;
      const prompt = 3;
      const cache = new KVCache(backend, config, B, prompt + steps + 1);
      for (let b = 0; b < B; b++) for (let s = 0; s < prompt; s++) cache.markValid(b, s, true);
      const ids = Int32Array.from({ length: B * prompt }, (_, i) => (i * 7) % config.vocab_size);
      const positions = Int32Array.from({ length: B * prompt }, (_, i) => i % prompt);
      backend.free(await decoder.forwardCached(ids, positions, cache, 0, prompt));
      const counts: number[] = [];
      for (let s = 0; s < steps; s++) {
        const slot = prompt + s;
        for (let b = 0; b < B; b++) cache.markValid(b, slot, true);
        const next = Int32Array.from({ length: B }, (_, b) => (s * 5 + b) % config.vocab_size);
        backend.free(await decoder.forwardCached(next, new Int32Array(B).fill(slot), cache, slot, 1));
        counts.push(live());
      }
      t.deepEqual(
        counts.filter((n) => n !== counts[0]),
        [],
        `live buffers after each step (first ${counts[0]})`,
      );
      cache.free();
    });

    test(`live buffers stay flat over 10 train steps: ${name}, ${model}`, async (t) => {
      const { backend, live } = countLiveBuffers(await createBackend(name));
      const decoder = makeDecoder(backend, config, randomParams(config, 4));
      const opt = new AdamW(backend, paramSpecs(config), {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weightDecay: 0.1,
        maxGradNorm: 1,
      });
      const { batch, targets } = raggedBatch(config, 5);
      const counts: number[] = [];
      for (let s = 0; s < 10; s++) {
        const { grads } = await lossAndGrad(decoder, batch, targets);
        await opt.update(decoder.params, grads, 1e-3);
        counts.push(live());
      }
      t.deepEqual(
        counts.filter((n) => n !== counts[0]),
        [],
        `live buffers after each step (first ${counts[0]})`,
      );
    });
  }
}
