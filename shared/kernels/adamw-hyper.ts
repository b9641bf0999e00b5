import type { AdamWHyper } from './backend.js';

/**
 * AdamW's hyperparameters in the order the adamw kernels (gpu.js, WGSL and WebAssembly) read them:
 * beta1, 1-beta1, beta2, 1-beta2, gradScale, 1-lr*wd, lr, 1-beta1^t, 1-beta2^t, eps.
 */
export function adamwHyperVector(h: AdamWHyper): Float32Array {
  return Float32Array.of(
    h.beta1,
    1 - h.beta1,
    h.beta2,
    1 - h.beta2,
    h.gradScale,
    1 - h.lr * h.weightDecay,
    h.lr,
    1 - h.beta1 ** h.step,
    1 - h.beta2 ** h.step,
    h.eps,
  );
}
