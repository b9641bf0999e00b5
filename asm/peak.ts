/**
 * Peak probe: what WebAssembly's 128-bit SIMD can physically do on this CPU, for reading a matmul's
 * GFLOP/s as a share of it (bench/peak.ts). Two register-only loops over twelve independent f32x4
 * accumulators (enough to hide the latency of two pipelines of four cycles; few enough that V8's
 * register allocator keeps them all in xmm registers): one multiply-add step per accumulator per
 * iteration, 8 flops each. `fma = 1` uses f32x4.relaxed_madd (one fused instruction on x86 with FMA)
 * in the relaxed build; `fma = 0` multiplies then adds. Nothing is loaded or stored inside the loop.
 *
 * Returns the accumulators' sum so the loop cannot be removed; the values stay finite (x * 0.5 + y
 * converges to 2 y).
 */

/** 1 if this build has the fused multiply-add loop (the relaxed build). */
export function hasFma(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 1 : 0;
}

/** Flops of one call: `iters` iterations x 12 accumulators x 4 lanes x 2. */
export function flopsPerCall(iters: i32): f64 {
  return <f64>iters * 96;
}

// @ts-expect-error: decorator
@inline
function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/** The fused loop (relaxed build only; the plain build has multiply-then-add here too: see `hasFma`). */
export function peakFma(iters: i32, seed: f32): f32 {
  // from the argument, so the compiler cannot fold it into a constant reloaded per use
  const x = f32x4.splat(seed * 0.5 - seed + 0.5);
  const y = f32x4.splat(seed);
  let a0 = f32x4.splat(seed);
  let a1 = f32x4.splat(seed + 1);
  let a2 = f32x4.splat(seed + 2);
  let a3 = f32x4.splat(seed + 3);
  let a4 = f32x4.splat(seed + 4);
  let a5 = f32x4.splat(seed + 5);
  let a6 = f32x4.splat(seed + 6);
  let a7 = f32x4.splat(seed + 7);
  let a8 = f32x4.splat(seed + 8);
  let a9 = f32x4.splat(seed + 9);
  let a10 = f32x4.splat(seed + 10);
  let a11 = f32x4.splat(seed + 11);
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
    a10 = madd(a10, x, y);
    a11 = madd(a11, x, y);
  }
  const s = f32x4.add(
    f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7))),
    f32x4.add(f32x4.add(a8, a9), f32x4.add(a10, a11)),
  );
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
}

/** The multiply-then-add loop. */
export function peakMulAdd(iters: i32, seed: f32): f32 {
  // from the argument, so the compiler cannot fold it into a constant reloaded per use
  const x = f32x4.splat(seed * 0.5 - seed + 0.5);
  const y = f32x4.splat(seed);
  let a0 = f32x4.splat(seed);
  let a1 = f32x4.splat(seed + 1);
  let a2 = f32x4.splat(seed + 2);
  let a3 = f32x4.splat(seed + 3);
  let a4 = f32x4.splat(seed + 4);
  let a5 = f32x4.splat(seed + 5);
  let a6 = f32x4.splat(seed + 6);
  let a7 = f32x4.splat(seed + 7);
  let a8 = f32x4.splat(seed + 8);
  let a9 = f32x4.splat(seed + 9);
  let a10 = f32x4.splat(seed + 10);
  let a11 = f32x4.splat(seed + 11);
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
    a10 = f32x4.add(f32x4.mul(a10, x), y);
    a11 = f32x4.add(f32x4.mul(a11, x), y);
  }
  const s = f32x4.add(
    f32x4.add(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)), f32x4.add(f32x4.add(a4, a5), f32x4.add(a6, a7))),
    f32x4.add(f32x4.add(a8, a9), f32x4.add(a10, a11)),
  );
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3);
}

