/**
 * Self-check of the wasm matmul in a fresh process: a few products in every layout against a float64
 * loop, on all participants, then a plain exit with the worker pool still up (it must not keep the
 * process alive). Prints one JSON line: { variant, threads, maxErr }.
 *
 *   node --import tsx shared/kernels/wasm/selftest.ts
 */
import { WasmMatmul } from './matmul.js';

const mm = WasmMatmul.get();
if (!mm) {
  console.error(WasmMatmul.unavailableReason());
  process.exit(2);
}

let seed = 12345;
function rand(): number {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 2 ** 32 - 0.5;
}

let maxErr = 0;
for (const [m, k, n] of [
  [67, 45, 301],
  [300, 19, 9],
  [8, 64, 99],
]) {
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      const a = Float32Array.from({ length: m * k }, rand);
      const b = Float32Array.from({ length: k * n }, rand);
      const c = mm.matmul(a, b, { m, k, n, transA, transB }, { threads: mm.threads });
      if (!c) throw new Error('matmul returned null');
      let diff = 0;
      let scale = 1;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++)
            s += (transA ? a[p * m + i] : a[i * k + p]) * (transB ? b[j * k + p] : b[p * n + j]);
          diff = Math.max(diff, Math.abs(c[i * n + j] - s));
          scale = Math.max(scale, Math.abs(s));
        }
      }
      maxErr = Math.max(maxErr, diff / scale);
    }
  }
}
console.log(JSON.stringify({ variant: mm.variant, threads: mm.threads, maxErr }));
