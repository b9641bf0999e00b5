import type { Rng } from '../../shared/util/rng.js';

/** n draws of N(0, scale^2), never exactly zero (a zero can hide a missing term). */
export function normals(rng: Rng, n: number, scale = 1): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let x = 0;
    while (x === 0) x = rng.normal();
    out[i] = x * scale;
  }
  return out;
}

/** n uniform integers in [lo, hi). */
export function ints(rng: Rng, n: number, lo: number, hi: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + rng.int(hi - lo);
  return out;
}

/** A string's 32-bit FNV-1a hash, to derive a stable seed from a test title. */
export function seedOf(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
