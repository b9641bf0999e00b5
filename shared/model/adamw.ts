import type { Backend, Buf } from '../kernels/backend.js';
import type { Params } from './decoder.js';
import type { ParamSpec } from './params.js';

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Global-norm clipping threshold; 0 turns clipping off. */
  maxGradNorm: number;
}

/**
 * AdamW with decoupled weight decay and bias correction (as torch.optim.AdamW), preceded by
 * clipping of the global gradient norm (as torch.nn.utils.clip_grad_norm_). Moments live on the
 * backend beside the parameters.
 */
export class AdamW {
  m: Params = new Map();
  v: Params = new Map();
  step = 0;

  constructor(
    readonly backend: Backend,
    readonly specs: ParamSpec[],
    readonly cfg: AdamWConfig,
  ) {}

  /** Applies one update in place on `params`; frees the gradients. Returns the pre-clip norm. */
  async update(params: Params, grads: Params, lr: number): Promise<{ gradNorm: number; clipCoef: number }> {
    const be = this.backend;
    const gs = this.specs.map((s) => grad(grads, s.name));
    // all at once: on a GPU each is a read-back (one pass where the backend has sumSquaresMany);
    // summed in spec order either way
    const squares = be.sumSquaresMany
      ? await be.sumSquaresMany(gs)
      : await Promise.all(gs.map((g) => be.sumSquares(g)));
    let sq = 0;
    for (const x of squares) sq += x;
    const gradNorm = Math.sqrt(sq);
    const clipCoef = this.cfg.maxGradNorm > 0 ? Math.min(1, this.cfg.maxGradNorm / (gradNorm + 1e-6)) : 1;
    this.step++;
    const hyper = (s: ParamSpec) => ({
      lr,
      beta1: this.cfg.beta1,
      beta2: this.cfg.beta2,
      eps: this.cfg.eps,
      weightDecay: s.decay ? this.cfg.weightDecay : 0,
      step: this.step,
      gradScale: clipCoef,
    });
    if (be.adamwInPlace) {
      const items = this.specs.map((s, i) => {
        const p = params.get(s.name)!;
        const m = this.m.get(s.name) ?? be.zeros(be.length(p));
        const v = this.v.get(s.name) ?? be.zeros(be.length(p));
        this.m.set(s.name, m);
        this.v.set(s.name, v);
        return { p, g: gs[i], m, v, h: hyper(s) };
      });
      await be.adamwInPlace(items);
      for (const g of gs) be.free(g);
      return { gradNorm, clipCoef };
    }
    for (const s of this.specs) {
      const p = params.get(s.name)!;
      const g = grad(grads, s.name);
      const m = this.m.get(s.name) ?? be.zeros(be.length(p));
      const v = this.v.get(s.name) ?? be.zeros(be.length(p));
      const out = await be.adamw(p, g, m, v, hyper(s));
      for (const old of [p, g, m, v]) be.free(old);
      params.set(s.name, out.p);
      this.m.set(s.name, out.m);
      this.v.set(s.name, out.v);
    }
    return { gradNorm, clipCoef };
  }
}

function grad(grads: Params, name: string): Buf {
  const g = grads.get(name);
  if (!g) throw new Error(`no gradient for ${name}`);
  return g;
}
