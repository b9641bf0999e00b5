import test, { type ExecutionContext } from 'ava';
import type { Backend, BackendName } from '../shared/kernels/backend.js';
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
 * the Qwen3 q/k norms, Qwen2 biases and Llama's o_proj bias are all covered. Two counts: the model's
 * bookkeeping seen through the backend's methods (every backend), and the backend's own
 * `liveBuffers` (the float32 backends; the float64 reference has none).
 */
const backends: BackendName[] = ['reference', ...(await testBackends())];

/** The backend's own count, which every float32 backend must have. */
function ownCount(t: ExecutionContext, name: BackendName, backend: Backend): () => number | null {
  if (name !== 'reference') t.is(typeof backend.liveBuffers, 'function', `${name} counts its live buffers`);
  return () => backend.liveBuffers?.() ?? null;
}

/** Both counts after every step equal their values after the first. */
function assertFlat(t: ExecutionContext, counts: (number | null)[][]): void {
  for (const [i, label] of ['live buffers (model)', "live buffers (backend's own count)"].entries()) {
    const series = counts.map((c) => c[i]);
    t.deepEqual(
      series.filter((n) => n !== series[0]),
      [],
      `${label} after each step (first ${series[0]})`,
    );
  }
}

for (const name of backends) {
  for (const [model, config] of Object.entries(TINY_CONFIGS)) {
    test(`live buffers stay flat over 100 decode steps: ${name}, ${model}`, async (t) => {
      const { backend, live } = countLiveBuffers(await createBackend(name));
      const own = ownCount(t, name, backend);
      const decoder = makeDecoder(backend, config, randomParams(config, 3));
      const B = 2;
      const steps = 100;
      const prompt = 3;
      const cache = new KVCache(backend, config, B, prompt + steps + 1);
      for (let b = 0; b < B; b++) for (let s = 0; s < prompt; s++) cache.markValid(b, s, true);
      const ids = Int32Array.from({ length: B * prompt }, (_, i) => (i * 7) % config.vocab_size);
      const positions = Int32Array.from({ length: B * prompt }, (_, i) => i % prompt);
      backend.free(await decoder.forwardCached(ids, positions, cache, 0, prompt));
      const counts: (number | null)[][] = [];
      for (let s = 0; s < steps; s++) {
        const slot = prompt + s;
        for (let b = 0; b < B; b++) cache.markValid(b, slot, true);
        const next = Int32Array.from({ length: B }, (_, b) => (s * 5 + b) % config.vocab_size);
        backend.free(await decoder.forwardCached(next, new Int32Array(B).fill(slot), cache, slot, 1));
        counts.push([live(), own()]);
      }
      assertFlat(t, counts);
      cache.free();
    });

    test(`live buffers stay flat over 10 train steps: ${name}, ${model}`, async (t) => {
      const { backend, live } = countLiveBuffers(await createBackend(name));
      const own = ownCount(t, name, backend);
      const decoder = makeDecoder(backend, config, randomParams(config, 4));
      const opt = new AdamW(backend, paramSpecs(config), {
        beta1: 0.9,
        beta2: 0.95,
        eps: 1e-8,
        weightDecay: 0.1,
        maxGradNorm: 1,
      });
      const { batch, targets } = raggedBatch(config, 5);
      const counts: (number | null)[][] = [];
      for (let s = 0; s < 10; s++) {
        const { grads } = await lossAndGrad(decoder, batch, targets);
        await opt.update(decoder.params, grads, 1e-3);
        counts.push([live(), own()]);
      }
      assertFlat(t, counts);
    });
  }
}
