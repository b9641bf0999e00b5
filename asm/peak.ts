/**
 * Peak probe: what WebAssembly's 128-bit SIMD can physically do on this CPU, for reading a matmul's
 * GFLOP/s as a share of it (bench/peak.ts). Register-only loops over independent f32x4 accumulators,
 * one multiply-add step per accumulator per iteration (8 flops), nothing loaded or stored inside the
 * loop: `fmaN` with f32x4.relaxed_madd (one fused instruction on x86 with FMA; the plain build has
 * multiply-then-add there too, see `hasFma`), `mulAddN` multiplying then adding. N accumulators: too
 * few leave the pipelines waiting on latency, too many make V8 spill them to the stack (on x64, 12
 * already run at about half the speed of 6), so the probe times several and keeps the best.
 *
 * Each returns a sum of its accumulators so the loop cannot be removed; the values stay finite
 * (a * 0.5 + y converges to 2 y).
 */

/** 1 if this build has the fused multiply-add loops (the relaxed build). */
export function hasFma(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 1 : 0;
}

// @ts-expect-error: decorator
@inline
function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/** 6 accumulators, fused multiply-add: 48 flops per iteration. */
export function fma6(iters: i32, seed: f32): f32 {
  // from the argument, so the compiler cannot fold it into a constant reloaded per use
  const x = f32x4.splat(seed * 0.5 - seed + 0.5);
  const y = f32x4.splat(seed);
  let a0 = f32x4.splat(seed + 0);
  let a1 = f32x4.splat(seed + 1);
  let a2 = f32x4.splat(seed + 2);
  let a3 = f32x4.splat(seed + 3);
  let a4 = f32x4.splat(seed + 4);
  let a5 = f32x4.splat(seed + 5);
  for (let i = 0; i < iters; i++) {
    a0 = madd(a0, x, y);
    a1 = madd(a1, x, y);
    a2 = madd(a2, x, y);
    a3 = madd(a3, x, y);
    a4 = madd(a4, x, y);
    a5 = madd(a5, x, y);
  }
  return f32x4.extract_lane(a0, 0) + f32x4.extract_lane(a1, 0) + f32x4.extract_lane(a2, 0) + f32x4.extract_lane(a3, 0) + f32x4.extract_lane(a4, 0) + f32x4.extract_lane(a5, 0);
}

/** 8 accumulators, fused multiply-add: 64 flops per iteration. */
export function fma8(iters: i32, seed: f32): f32 {
  // from the argument, so the compiler cannot fold it into a constant reloaded per use
  const x = f32x4.splat(seed * 0.5 - seed + 0.5);
  const y = f32x4.splat(seed);
  let a0 = f32x4.splat(seed + 0);
  let a1 = f32x4.splat(seed + 1);
  let a2 = f32x4.splat(seed + 2);
  let a3 = f32x4.splat(seed + 3);
  let a4 = f32x4.splat(seed + 4);
  let a5 = f32x4.splat(seed + 5);
  let a6 = f32x4.splat(seed + 6);
  let a7 = f32x4.splat(seed + 7);
  for (let i = 0; i < iters; i++) {
    a0 = madd(a0, x, y);
    a1 = madd(a1, x, y);
    a2 = madd(a2, x, y);
    a3 = madd(a3, x, y);
    a4 = madd(a4, x, y);
    a5 = madd(a5, x, y);
    a6 = madd(a6, x, y);
    a7 = madd(a7, x, y);
  }
  return f32x4.extract_lane(a0, 0) + f32x4.extract_lane(a1, 0) + f32x4.extract_lane(a2, 0) + f32x4.extract_lane(a3, 0) + f32x4.extract_lane(a4, 0) + f32x4.extract_lane(a5, 0) + f32x4.extract_lane(a6, 0) + f32x4.extract_lane(a7, 0);
}

/** 10 accumulators, fused multiply-add: 80 flops per iteration. */
export function fma10(iters: i32, seed: f32): f32 {
  // from the argument, so the compiler cannot fold it into a constant reloaded per use
  const x = f32x4.splat(seed * 0.5 - seed + 0.5);
  const y = f32x4.splat(seed);
  let a0 = f32x4.splat(seed + 0);
  let a1 = f32x4.splat(seed + 1);
  let a2 = f32x4.splat(seed + 2);
  let a3 = f32x4.splat(seed + 3);
  let a4 = f32x4.splat(seed + 4);
  let a5 = f32x4.splat(seed + 5);
  let a6 = f32x4.splat(seed + 6);
  let a7 = f32x4.splat(seed + 7);
  let a8 = f32x4.splat(seed + 8);
  let a9 = f32x4.splat(seed + 9);
  for (let i = 0; i < iters; i++) {
    a0 = madd(a0, x, y);
    a1 = madd(a1, x, y);
    a2 = madd(a2, x, y);
    a3 = madd(a3, x, y);
    a4 = madd(a4, x, y);
    a5 = madd(a5, x, y);
    a6 = madd(a6, x, y);
    a7 = madd(a7, x, y);
    a8 = madd(a8, x, y);
    a9 = madd(a9, x, y);
  }
  return f32x4.extract_lane(a0, 0) + f32x4.extract_lane(a1, 0) + f32x4.extract_lane(a2, 0) + f32x4.extract_lane(a3, 0) + f32x4.extract_lane(a4, 0) + f32x4.extract_lane(a5, 0) + f32x4.extract_lane(a6, 0) + f32x4.extract_lane(a7, 0) + f32x4.extract_lane(a8, 0) + f32x4.extract_lane(a9, 0);
}

/** 6 accumulators, multiply then add: 48 flops per iteration. */
export function mulAdd6(iters: i32, seed: f32): f32 {
  // from the argument, so the compiler cannot fold it into a constant reloaded per use
  const x = f32x4.splat(seed * 0.5 - seed + 0.5);
  const y = f32x4.splat(seed);
  let a0 = f32x4.splat(seed + 0);
  let a1 = f32x4.splat(seed + 1);
  let a2 = f32x4.splat(seed + 2);
  let a3 = f32x4.splat(seed + 3);
  let a4 = f32x4.splat(seed + 4);
  let a5 = f32x4.splat(seed + 5);
  for (let i = 0; i < iters; i++) {
    a0 = f32x4.add(f32x4.mul(a0, x), y);
    a1 = f32x4.add(f32x4.mul(a1, x), y);
    a2 = f32x4.add(f32x4.mul(a2, x), y);
    a3 = f32x4.add(f32x4.mul(a3, x), y);
    a4 = f32x4.add(f32x4.mul(a4, x), y);
    a5 = f32x4.add(f32x4.mul(a5, x), y);
  }
  return f32x4.extract_lane(a0, 0) + f32x4.extract_lane(a1, 0) + f32x4.extract_lane(a2, 0) + f32x4.extract_lane(a3, 0) + f32x4.extract_lane(a4, 0) + f32x4.extract_lane(a5, 0);
}

/** 8 accumulators, multiply then add: 64 flops per iteration. */
export function mulAdd8(iters: i32, seed: f32): f32 {
  // from the argument, so the compiler cannot fold it into a constant reloaded per use
  const x = f32x4.splat(seed * 0.5 - seed + 0.5);
  const y = f32x4.splat(seed);
  let a0 = f32x4.splat(seed + 0);
  let a1 = f32x4.splat(seed + 1);
  let a2 = f32x4.splat(seed + 2);
  let a3 = f32x4.splat(seed + 3);
  let a4 = f32x4.splat(seed + 4);
  let a5 = f32x4.splat(seed + 5);
  let a6 = f32x4.splat(seed + 6);
  let a7 = f32x4.splat(seed + 7);
  for (let i = 0; i < iters; i++) {
    a0 = f32x4.add(f32x4.mul(a0, x), y);
    a1 = f32x4.add(f32x4.mul(a1, x), y);
    a2 = f32x4.add(f32x4.mul(a2, x), y);
    a3 = f32x4.add(f32x4.mul(a3, x), y);
    a4 = f32x4.add(f32x4.mul(a4, x), y);
    a5 = f32x4.add(f32x4.mul(a5, x), y);
    a6 = f32x4.add(f32x4.mul(a6, x), y);
    a7 = f32x4.add(f32x4.mul(a7, x), y);
  }
  return f32x4.extract_lane(a0, 0) + f32x4.extract_lane(a1, 0) + f32x4.extract_lane(a2, 0) + f32x4.extract_lane(a3, 0) + f32x4.extract_lane(a4, 0) + f32x4.extract_lane(a5, 0) + f32x4.extract_lane(a6, 0) + f32x4.extract_lane(a7, 0);
}

/** 10 accumulators, multiply then add: 80 flops per iteration. */
export function mulAdd10(iters: i32, seed: f32): f32 {
  // from the argument, so the compiler cannot fold it into a constant reloaded per use
  const x = f32x4.splat(seed * 0.5 - seed + 0.5);
  const y = f32x4.splat(seed);
  let a0 = f32x4.splat(seed + 0);
  let a1 = f32x4.splat(seed + 1);
  let a2 = f32x4.splat(seed + 2);
  let a3 = f32x4.splat(seed + 3);
  let a4 = f32x4.splat(seed + 4);
  let a5 = f32x4.splat(seed + 5);
  let a6 = f32x4.splat(seed + 6);
  let a7 = f32x4.splat(seed + 7);
  let a8 = f32x4.splat(seed + 8);
  let a9 = f32x4.splat(seed + 9);
  for (let i = 0; i < iters; i++) {
    a0 = f32x4.add(f32x4.mul(a0, x), y);
    a1 = f32x4.add(f32x4.mul(a1, x), y);
    a2 = f32x4.add(f32x4.mul(a2, x), y);
    a3 = f32x4.add(f32x4.mul(a3, x), y);
    a4 = f32x4.add(f32x4.mul(a4, x), y);
    a5 = f32x4.add(f32x4.mul(a5, x), y);
    a6 = f32x4.add(f32x4.mul(a6, x), y);
    a7 = f32x4.add(f32x4.mul(a7, x), y);
    a8 = f32x4.add(f32x4.mul(a8, x), y);
    a9 = f32x4.add(f32x4.mul(a9, x), y);
  }
  return f32x4.extract_lane(a0, 0) + f32x4.extract_lane(a1, 0) + f32x4.extract_lane(a2, 0) + f32x4.extract_lane(a3, 0) + f32x4.extract_lane(a4, 0) + f32x4.extract_lane(a5, 0) + f32x4.extract_lane(a6, 0) + f32x4.extract_lane(a7, 0) + f32x4.extract_lane(a8, 0) + f32x4.extract_lane(a9, 0);
}
