import { Rng } from '../util/rng.js';
import type { ModelConfig } from './config.js';
import { numel, paramSpecs } from './params.js';

/**
 * Fresh weights: normal(0, std) matrices, with the projections that write into the residual stream
 * (o_proj, down_proj) scaled by 1/sqrt(2 * layers) so the stream's variance does not grow with depth
 * (GPT-2's scheme); RMSNorm gains at one, biases at zero.
 */
export function initParams(c: ModelConfig, seed: number, std = 0.02): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const out = new Map<string, Float32Array>();
  const residualStd = std / Math.sqrt(2 * c.num_hidden_layers);
  for (const s of paramSpecs(c)) {
    const a = new Float32Array(numel(s.shape));
    if (s.init === 'ones') a.fill(1);
    else if (s.init === 'normal') {
      const sd = /o_proj|down_proj/.test(s.name) ? residualStd : std;
      for (let i = 0; i < a.length; i++) a[i] = rng.normal() * sd;
    }
    out.set(s.name, a);
  }
  return out;
}
