import type { Backend } from '../shared/kernels/backend.js';
import { AdamW } from '../shared/model/adamw.js';
import { nextTokenTargets, padBatch } from '../shared/model/batch.js';
import type { ModelConfig } from '../shared/model/config.js';
import { Decoder } from '../shared/model/decoder.js';
import { generate } from '../shared/model/generate.js';
import { initParams } from '../shared/model/init.js';
import { lossAndGrad } from '../shared/model/loss.js';
import { paramSpecs } from '../shared/model/params.js';
import { uploadParams } from '../shared/model/weights.js';
import { Rng } from '../shared/util/rng.js';

const base = {
  model_type: 'qwen3',
  vocab_size: 2259,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
  max_position_embeddings: 512,
  attention_bias: false,
} as const;

/**
 * The bench models. `tiny` is the default model of configs/pretrain-tiny.yaml (vocabulary 2259: the
 * tokenizer that config builds); `small` is the same family four layers deep and four times wider;
 * `medium` (about 25M parameters) eight layers deep and eight times wider, trained on longer
 * sequences (BENCH_SHAPES), where matrix products dominate the step.
 */
export const BENCH_MODELS: Record<string, ModelConfig> = {
  tiny: {
    ...base,
    hidden_size: 64,
    intermediate_size: 176,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 16,
  },
  small: {
    ...base,
    hidden_size: 256,
    intermediate_size: 704,
    num_hidden_layers: 4,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    head_dim: 32,
  },
  medium: {
    ...base,
    hidden_size: 512,
    intermediate_size: 1408,
    num_hidden_layers: 8,
    num_attention_heads: 8,
    num_key_value_heads: 4,
    head_dim: 64,
  },
};

/** Shapes of the cases: the pretrain-tiny batch (8 x 64) and G = 8 generations of 32 + 64 tokens. */
export const SHAPES = { batch: 8, seq: 64, genBatch: 8, prompt: 32, newTokens: 64 };

export type BenchShapes = typeof SHAPES;

/** Per-model departures from SHAPES: `medium` trains on 8 x 256 tokens. */
export const BENCH_SHAPES: Record<string, Partial<BenchShapes>> = { medium: { seq: 256 } };

export function shapesOf(model: string): BenchShapes {
  return { ...SHAPES, ...(BENCH_SHAPES[model] ?? {}) };
}

/** AdamW as configs/pretrain-tiny.yaml trains (constant lr here). */
export const OPTIMIZER = {
  lr: 3e-3,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weight_decay: 0.1,
  max_grad_norm: 1.0,
};

export function randomIds(rng: Rng, n: number, vocab: number): number[] {
  return Array.from({ length: n }, () => rng.int(vocab));
}

/** A bench case: `run` does one unit of work; `free` releases its buffers. */
export interface BenchCase<T> {
  run: () => Promise<T>;
  free: () => void;
}

/** One learner step (forward + loss + backward + clip + AdamW) on a fixed random batch; returns the loss. */
export function learnerCase(be: Backend, c: ModelConfig, shapes: BenchShapes = SHAPES): BenchCase<number> {
  const model = new Decoder(c, be, uploadParams(be, initParams(c, 1234)));
  const specs = paramSpecs(c);
  const opt = new AdamW(be, specs, {
    beta1: OPTIMIZER.beta1,
    beta2: OPTIMIZER.beta2,
    eps: OPTIMIZER.eps,
    weightDecay: OPTIMIZER.weight_decay,
    maxGradNorm: OPTIMIZER.max_grad_norm,
  });
  const rng = new Rng(7);
  const seqs = Array.from({ length: shapes.batch }, () => randomIds(rng, shapes.seq, c.vocab_size));
  const batch = padBatch(seqs, 0);
  const targets = nextTokenTargets(batch);
  const last = specs[specs.length - 1].name;
  return {
    run: async () => {
      const r = await lossAndGrad(model, batch, targets);
      await opt.update(model.params, r.grads, OPTIMIZER.lr);
      await be.read(model.params.get(last)!); // waits for the queued updates on a GPU
      return r.loss;
    },
    free: () => {
      for (const b of [...model.params.values(), ...opt.m.values(), ...opt.v.values()]) be.free(b);
    },
  };
}

/** One greedy KV-cache generation of G sequences; throws if one stops early. */
export function generationCase(be: Backend, c: ModelConfig, shapes: BenchShapes = SHAPES): BenchCase<void> {
  const model = new Decoder(c, be, uploadParams(be, initParams(c, 1234)));
  const rng = new Rng(11);
  const prompts = Array.from({ length: shapes.genBatch }, () => randomIds(rng, shapes.prompt, c.vocab_size));
  return {
    run: async () => {
      const out = await generate(model, prompts, {
        maxNewTokens: shapes.newTokens,
        stopTokens: [],
        temperature: 0,
        topK: 0,
        topP: 1,
        rng: new Rng(1),
      });
      if (out.some((g) => g.tokens.length !== shapes.newTokens)) throw new Error('generation stopped early');
    },
    free: () => {
      for (const b of model.params.values()) be.free(b);
    },
  };
}
