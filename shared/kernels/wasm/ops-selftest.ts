/**
 * Self-check of the wasm ops in a fresh process (used by test/wasm-kernels.test.ts to check the
 * relaxed-SIMD build and that the worker pool does not keep the process alive): attention forward and
 * backward, cross-entropy, swiglu backward, rmsnorm backward and AdamW on all participants against the
 * float64 reference, then a plain exit. Prints one JSON line: { variant, threads, maxErr }.
 *
 *   node --import tsx shared/kernels/wasm/ops-selftest.ts
 */
import type { AttentionShape } from '../backend.js';
import { ReferenceBackend } from '../reference.js';
import { WasmOps } from './ops.js';

const ops = WasmOps.get();
if (!ops) {
  console.error(WasmOps.unavailableReason());
  process.exit(2);
}
ops.forceThreads = ops.threads;

let seed = 4242;
function rand(): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return (seed / 2 ** 32 - 0.5) * 4;
}
const vec = (n: number) => Float32Array.from({ length: n }, rand);
const ref = new ReferenceBackend();
const R = (x: ArrayLike<number>) => ref.upload(x);

let maxErr = 0;
function cmp(got: ArrayLike<number>, want: ArrayLike<number>): void {
  let d = 0;
  let m = 1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    d = Number.isNaN(e) ? Number.POSITIVE_INFINITY : Math.max(d, e);
    m = Math.max(m, Math.abs(want[i]));
  }
  if (got.length !== want.length) d = Number.POSITIVE_INFINITY;
  maxErr = Math.max(maxErr, d / m);
}

const s: AttentionShape = {
  batch: 3,
  tq: 9,
  tk: 11,
  heads: 6,
  kvHeads: 2,
  headDim: 10,
  kValid: Uint8Array.from({ length: 33 }, (_, i) => (i % 7 === 3 ? 0 : 1)),
  qOffset: Int32Array.of(2, 0, 1),
};
const q = vec(3 * 9 * 6 * 10);
const k = vec(3 * 11 * 2 * 10);
const v = vec(3 * 11 * 2 * 10);
const dOut = vec(q.length);
const fw = await ref.attention(R(q), R(k), R(v), s);
const got = ops.attention(q, k, v, s);
cmp(got.out, await ref.read(fw.out));
cmp(got.probs, await ref.read(fw.probs));
const bw = await ref.attentionBackward(R(dOut), R(q), R(k), R(v), fw.probs, s);
const gb = ops.attentionBackward(dOut, q, k, v, Float32Array.from(await ref.read(fw.probs)), s);
cmp(gb.dq, await ref.read(bw.dq));
cmp(gb.dk, await ref.read(bw.dk));
cmp(gb.dv, await ref.read(bw.dv));

const logits = vec(7 * 301);
const targets = Int32Array.of(3, -1, 300, 0, 17, 150, 299);
const weights = Float64Array.of(1, 1, 0.5, 0, 2, 1, 1 / 3);
const ce = await ref.crossEntropy(R(logits), targets, weights, 7, 301);
const gce = ops.crossEntropy(logits, targets, weights, 7, 301);
cmp(gce.nll, await ref.read(ce.nll));
cmp(gce.dlogits, await ref.read(ce.dlogits));

const g = vec(1003);
const u = vec(1003);
const dh = vec(1003);
const sw = await ref.swigluBackward(R(dh), R(g), R(u));
const gsw = ops.swigluBackward(dh, g, u);
cmp(gsw.dGate, await ref.read(sw.dGate));
cmp(gsw.dUp, await ref.read(sw.dUp));

const x = vec(37 * 45);
const w = vec(45);
const dy = vec(37 * 45);
const rn = await ref.rmsnorm(R(x), R(w), 37, 45, 1e-6);
const rb = await ref.rmsnormBackward(R(dy), R(x), R(w), rn.rstd, 37, 45);
const grb = ops.rmsnormBackward(dy, x, w, Float32Array.from(await ref.read(rn.rstd)), 37, 45);
cmp(grb.dx, await ref.read(rb.dx));
cmp(grb.dw, await ref.read(rb.dw));

const h = { lr: 1e-2, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 3, gradScale: 0.5 };
const vv = vec(1003).map((a) => a * a);
const ad = await ref.adamw(R(g), R(u), R(dh), R(vv), h);
const hp = [0.9, 0.1, 0.95, 0.05, 0.5, 1 - 1e-3, 1e-2, 1 - 0.9 ** 3, 1 - 0.95 ** 3, 1e-8];
const gad = ops.adamw(g, u, dh, vv, hp);
cmp(gad.p, await ref.read(ad.p));
cmp(gad.m, await ref.read(ad.m));
cmp(gad.v, await ref.read(ad.v));

console.log(JSON.stringify({ variant: ops.variant, threads: ops.threads, maxErr }));
