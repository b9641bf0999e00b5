import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LossTargets, TokenBatch } from '../../shared/model/batch.js';
import { type LoadedCheckpoint, loadCheckpoint } from '../../shared/model/checkpoint.js';
import { readSafetensorsFloat64 } from '../../shared/model/safetensors.js';

/**
 * The PyTorch reference fixtures (scripts/torch_ref/make_fixtures.py) as the TypeScript side reads
 * them: shared by test/torch-reference.test.ts and the GPU-host check (scripts/gpu/check-webgpu.ts).
 */
export const FIXTURES = join(
  resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'),
  'test',
  'fixtures',
  'torch-ref',
);
export const FIXTURE_NAMES = ['qwen3-gqa', 'qwen2-tied'] as const;

/**
 * Tolerances, as max |ts - torch| / max(1, max |torch|) per tensor:
 * - float64 reference backend: 1e-9 everywhere (the same float32 weights, float64 arithmetic).
 * - float32 backends: logits and loss 1e-4, gradients 1e-3, losses along the 10 steps 1e-3,
 *   parameters after 10 steps 2e-3 (Adam divides by sqrt(v): float32 rounding in tiny gradients
 *   moves an update by up to lr, and lr is 1e-2 here).
 */
export const TORCH_TOL = {
  f64: { logits: 1e-9, grads: 1e-9, losses: 1e-9, params: 1e-9 },
  f32: { logits: 1e-4, grads: 1e-3, losses: 1e-3, params: 2e-3 },
};

export interface FixtureOptimizer {
  lr_max: number;
  lr_min: number;
  warmup: number;
  steps: number;
  betas: [number, number];
  eps: number;
  weight_decay: number;
  max_grad_norm: number;
}

export interface TorchFixture {
  checkpoint: LoadedCheckpoint;
  batch: TokenBatch;
  targets: LossTargets;
  optimizer: FixtureOptimizer;
  /** logits, grad.<name>, after_steps.<name>, at float64. */
  expected: Map<string, { shape: number[]; data: Float64Array }>;
  loss: number;
  /** The loss before each of the optimizer steps. */
  losses: number[];
}

interface Inputs {
  input_ids: number[][];
  attention_mask: number[][];
  position_ids: number[][];
  labels: number[][];
  loss_weights: number[][];
  optimizer: FixtureOptimizer;
}

export function loadTorchFixture(name: string): TorchFixture {
  const dir = join(FIXTURES, name);
  const inp = JSON.parse(readFileSync(join(dir, 'inputs.json'), 'utf8')) as Inputs;
  const out = JSON.parse(readFileSync(join(dir, 'outputs.json'), 'utf8')) as {
    loss: number;
    losses: number[];
  };
  return {
    checkpoint: loadCheckpoint(dir),
    batch: {
      batch: inp.input_ids.length,
      seqLen: inp.input_ids[0].length,
      ids: Int32Array.from(inp.input_ids.flat()),
      mask: Uint8Array.from(inp.attention_mask.flat()),
      positions: Int32Array.from(inp.position_ids.flat()),
    },
    targets: {
      targets: Int32Array.from(inp.labels.flat().map((l) => (l < 0 ? -1 : l))),
      weights: Float64Array.from(inp.loss_weights.flat()),
    },
    optimizer: inp.optimizer,
    expected: readSafetensorsFloat64(join(dir, 'outputs.safetensors')),
    loss: out.loss,
    losses: out.losses,
  };
}

/** The same error measure as the kernel tests (shared with scripts/gpu/check-webgpu.ts). */
export { relErr } from './rel-err.js';
