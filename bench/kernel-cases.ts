/**
 * The matmul cases of `npm run bench:kernels`, shared by its CPU mode (bench/kernels.ts) and its GPU
 * mode (bench/kernels-gpu.ts): the bench model's shapes (N = 512 tokens, hidden 64, intermediate 176,
 * kv 32, vocab 2259; forward x@W^T, backward dy@W and dy^T@x; decoding with 8 sequences) and 1024^3.
 * Operands are stored as the model stores them: A [k, m] when transA, B [n, k] when transB.
 */
import type { MatmulShape } from '../shared/kernels/backend.js';

export interface Case {
  name: string;
  shape: MatmulShape;
}

export const N = 512;
export const H = 64;
export const I = 176;
export const KV = 32;
export const V = 2259;
export const G = 8;

function nt(name: string, m: number, k: number, n: number): Case {
  return { name, shape: { m, k, n, transB: true } };
}
function nn(name: string, m: number, k: number, n: number): Case {
  return { name, shape: { m, k, n } };
}
function tn(name: string, m: number, k: number, n: number): Case {
  return { name, shape: { m, k, n, transA: true } };
}

export const CASES: Case[] = [
  nt('fwd q/o x@W^T', N, H, H),
  nt('fwd k/v x@W^T', N, H, KV),
  nt('fwd gate/up x@W^T', N, H, I),
  nt('fwd down x@W^T', N, I, H),
  nt('fwd lm_head x@W^T', N, H, V),
  nn('bwd dx q/o dy@W', N, H, H),
  nn('bwd dx k/v dy@W', N, KV, H),
  nn('bwd dx gate/up dy@W', N, I, H),
  nn('bwd dx down dy@W', N, H, I),
  nn('bwd dx lm_head dy@W', N, V, H),
  tn('bwd dW q/o dy^T@x', H, N, H),
  tn('bwd dW k/v dy^T@x', KV, N, H),
  tn('bwd dW gate/up dy^T@x', I, N, H),
  tn('bwd dW down dy^T@x', H, N, I),
  tn('bwd dW lm_head dy^T@x', V, N, H),
  nt('decode q/o x@W^T', G, H, H),
  nt('decode k/v x@W^T', G, H, KV),
  nt('decode gate/up x@W^T', G, H, I),
  nt('decode down x@W^T', G, I, H),
  nt('decode lm_head x@W^T', G, H, V),
  nn('square 1024^3', 1024, 1024, 1024),
];

/** Sizes where a GPU gets busy; out of the CPU run, whose cases take long enough already. */
export const GPU_ONLY_CASES: Case[] = [
  nn('square 2048^3', 2048, 2048, 2048),
  nn('square 4096^3', 4096, 4096, 4096),
];

export const flopsOf = (s: MatmulShape) => 2 * s.m * s.k * s.n;
export const layoutOf = (s: MatmulShape) => `${s.transA ? 'T' : 'N'}${s.transB ? 'T' : 'N'}`;
export const shapeOf = (s: MatmulShape) => `${s.m}x${s.k}x${s.n} ${layoutOf(s)}`;
