/**
 * f32 matrix multiply in WebAssembly SIMD (AssemblyScript), for rmt's CPU backends.
 *
 *   C[m, n] = op(A) op(B),  op(A)[i, p] = transA ? A[p * m + i] : A[i * k + p],
 *                           op(B)[p, j] = transB ? B[j * k + p] : B[p * n + j].
 *
 * All pointers are byte addresses in the (imported, shared) linear memory; the caller (the
 * TypeScript wrapper in shared/kernels/wasm/) lays out the operands, C and one work area per
 * thread. Each exported entry computes a rectangle C[i0:i1, j0:j1] over the full k, so threads
 * sharing one memory can split the output without synchronising.
 *
 * `gemm` is the blocked path (after Goto / BLIS): for each NC-column block of B and KC-deep slice
 * of k, B is packed into NR-wide column panels; for each MC-row block, A is packed into MR-high row
 * panels; an MR x NR micro-kernel then keeps the 4 x 8 tile of C in eight f32x4 accumulators and
 * walks k with one broadcast of A per row and two vector loads of B per step. Packing zero-pads
 * ragged panels, so the micro-kernel always runs full; partial tiles go through a scratch tile.
 *
 * `gemmDot` is the path for few rows with B transposed (decoding: x[8, k] @ W^T with W [n, k]):
 * both operands are contiguous along k, so it vectorises over k (2 rows x 4 columns of dot
 * products, reduced horizontally at the end) and needs no packing.
 *
 * Built twice (scripts/build-wasm.mjs): plain SIMD (multiply, then add) and relaxed SIMD, where
 * `madd` becomes f32x4.relaxed_madd (a fused multiply-add on x86 with FMA); the loader picks the
 * relaxed build only where the engine validates it.
 */

const MR: i32 = 4;
const NR: i32 = 8;
const KC: i32 = 256;
const MC: i32 = 192;
const NC: i32 = 2048;

const AP_BYTES: i32 = MC * KC * 4;
const BP_BYTES: i32 = KC * NC * 4;
const TILE_BYTES: i32 = MR * NR * 4;

/** Bytes of work area each thread needs for `gemm` (packed A block, packed B block, scratch tile). */
export function workBytes(): i32 {
  return AP_BYTES + BP_BYTES + TILE_BYTES;
}

/** 1 if this build multiplies and adds with relaxed (fused) madd. */
export function relaxed(): i32 {
  return ASC_FEATURE_RELAXED_SIMD ? 1 : 0;
}

// @ts-expect-error: decorator
@inline
function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

// ---------------------------------------------------------------------------------------------
// packing

/**
 * Packs op(A)[i0 : i0 + mc, p0 : p0 + kc] into MR-row panels: panel r holds, for each p, the MR
 * values op(A)[i0 + r*MR + 0..MR-1, p0 + p] contiguously. Rows past i0 + mc are zero.
 */
function packA(transA: i32, m: i32, k: i32, a: usize, i0: i32, mc: i32, p0: i32, kc: i32, dst: usize): void {
  for (let ir = 0; ir < mc; ir += MR) {
    const rows = min(MR, mc - ir);
    const i = i0 + ir;
    if (transA) {
      // op(A)[i, p] = A[p * m + i]: the MR values of one p are contiguous.
      let src = a + ((<usize>p0 * <usize>m + <usize>i) << 2);
      const step = <usize>m << 2;
      if (rows == MR) {
        for (let p = 0; p < kc; p++) {
          v128.store(dst, v128.load(src));
          src += step;
          dst += 16;
        }
      } else {
        for (let p = 0; p < kc; p++) {
          for (let r = 0; r < MR; r++) store<f32>(dst + (<usize>r << 2), r < rows ? load<f32>(src + (<usize>r << 2)) : 0);
          src += step;
          dst += 16;
        }
      }
    } else {
      // op(A)[i, p] = A[i * k + p]: rows are contiguous along p; transpose 4 x 4 blocks.
      const row = <usize>k << 2;
      const src = a + ((<usize>i * <usize>k + <usize>p0) << 2);
      if (rows == MR) {
        let p = 0;
        for (; p + 4 <= kc; p += 4) {
          const s = src + (<usize>p << 2);
          const r0 = v128.load(s);
          const r1 = v128.load(s + row);
          const r2 = v128.load(s + 2 * row);
          const r3 = v128.load(s + 3 * row);
          const t0 = f32x4.shuffle(r0, r1, 0, 4, 1, 5);
          const t1 = f32x4.shuffle(r2, r3, 0, 4, 1, 5);
          const t2 = f32x4.shuffle(r0, r1, 2, 6, 3, 7);
          const t3 = f32x4.shuffle(r2, r3, 2, 6, 3, 7);
          v128.store(dst, f32x4.shuffle(t0, t1, 0, 1, 4, 5));
          v128.store(dst, f32x4.shuffle(t0, t1, 2, 3, 6, 7), 16);
          v128.store(dst, f32x4.shuffle(t2, t3, 0, 1, 4, 5), 32);
          v128.store(dst, f32x4.shuffle(t2, t3, 2, 3, 6, 7), 48);
          dst += 64;
        }
        for (; p < kc; p++) {
          const s = src + (<usize>p << 2);
          store<f32>(dst, load<f32>(s));
          store<f32>(dst, load<f32>(s + row), 4);
          store<f32>(dst, load<f32>(s + 2 * row), 8);
          store<f32>(dst, load<f32>(s + 3 * row), 12);
          dst += 16;
        }
      } else {
        for (let p = 0; p < kc; p++) {
          const s = src + (<usize>p << 2);
          for (let r = 0; r < MR; r++) store<f32>(dst + (<usize>r << 2), r < rows ? load<f32>(s + <usize>r * row) : 0);
          dst += 16;
        }
      }
    }
  }
}

/**
 * Packs op(B)[p0 : p0 + kc, j0 : j0 + nc] into NR-column panels: panel c holds, for each p, the NR
 * values op(B)[p0 + p, j0 + c*NR + 0..NR-1] contiguously. Columns past j0 + nc are zero.
 */
function packB(transB: i32, n: i32, k: i32, b: usize, p0: i32, kc: i32, j0: i32, nc: i32, dst: usize): void {
  for (let jr = 0; jr < nc; jr += NR) {
    const cols = min(NR, nc - jr);
    const j = j0 + jr;
    if (!transB) {
      // op(B)[p, j] = B[p * n + j]: the NR values of one p are contiguous.
      let src = b + ((<usize>p0 * <usize>n + <usize>j) << 2);
      const step = <usize>n << 2;
      if (cols == NR) {
        for (let p = 0; p < kc; p++) {
          v128.store(dst, v128.load(src));
          v128.store(dst, v128.load(src, 16), 16);
          src += step;
          dst += 32;
        }
      } else {
        for (let p = 0; p < kc; p++) {
          for (let c = 0; c < NR; c++) store<f32>(dst + (<usize>c << 2), c < cols ? load<f32>(src + (<usize>c << 2)) : 0);
          src += step;
          dst += 32;
        }
      }
    } else {
      // op(B)[p, j] = B[j * k + p]: columns of op(B) are contiguous along p; transpose 4 x 4 blocks.
      const row = <usize>k << 2;
      const src = b + ((<usize>j * <usize>k + <usize>p0) << 2);
      if (cols == NR) {
        let p = 0;
        for (; p + 4 <= kc; p += 4) {
          for (let h = 0; h < 2; h++) {
            const s = src + (<usize>p << 2) + <usize>(h * 4) * row;
            const d = dst + (<usize>h << 4);
            const r0 = v128.load(s);
            const r1 = v128.load(s + row);
            const r2 = v128.load(s + 2 * row);
            const r3 = v128.load(s + 3 * row);
            const t0 = f32x4.shuffle(r0, r1, 0, 4, 1, 5);
            const t1 = f32x4.shuffle(r2, r3, 0, 4, 1, 5);
            const t2 = f32x4.shuffle(r0, r1, 2, 6, 3, 7);
            const t3 = f32x4.shuffle(r2, r3, 2, 6, 3, 7);
            v128.store(d, f32x4.shuffle(t0, t1, 0, 1, 4, 5));
            v128.store(d, f32x4.shuffle(t0, t1, 2, 3, 6, 7), 32);
            v128.store(d, f32x4.shuffle(t2, t3, 0, 1, 4, 5), 64);
            v128.store(d, f32x4.shuffle(t2, t3, 2, 3, 6, 7), 96);
          }
          dst += 128;
        }
        for (; p < kc; p++) {
          const s = src + (<usize>p << 2);
          for (let c = 0; c < NR; c++) store<f32>(dst + (<usize>c << 2), load<f32>(s + <usize>c * row));
          dst += 32;
        }
      } else {
        for (let p = 0; p < kc; p++) {
          const s = src + (<usize>p << 2);
          for (let c = 0; c < NR; c++) store<f32>(dst + (<usize>c << 2), c < cols ? load<f32>(s + <usize>c * row) : 0);
          dst += 32;
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// micro-kernel

/**
 * C tile [MR, NR] at `c` (row stride `ldc` bytes) = (accumulate ? C : 0) + Ap panel x Bp panel over
 * kc steps. Ap advances 16 bytes per step (MR floats), Bp 32 (NR floats).
 */
function micro(kc: i32, ap: usize, bp: usize, c: usize, ldc: usize, accumulate: i32): void {
  let c00 = f32x4.splat(0);
  let c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0);
  let c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0);
  let c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0);
  let c31 = f32x4.splat(0);
  const end = ap + (<usize>kc << 4);
  while (ap < end) {
    const b0 = v128.load(bp);
    const b1 = v128.load(bp, 16);
    let a = v128.load32_splat(ap);
    c00 = madd(a, b0, c00);
    c01 = madd(a, b1, c01);
    a = v128.load32_splat(ap, 4);
    c10 = madd(a, b0, c10);
    c11 = madd(a, b1, c11);
    a = v128.load32_splat(ap, 8);
    c20 = madd(a, b0, c20);
    c21 = madd(a, b1, c21);
    a = v128.load32_splat(ap, 12);
    c30 = madd(a, b0, c30);
    c31 = madd(a, b1, c31);
    ap += 16;
    bp += 32;
  }
  if (accumulate) {
    c00 = f32x4.add(c00, v128.load(c));
    c01 = f32x4.add(c01, v128.load(c, 16));
    c10 = f32x4.add(c10, v128.load(c + ldc));
    c11 = f32x4.add(c11, v128.load(c + ldc, 16));
    c20 = f32x4.add(c20, v128.load(c + 2 * ldc));
    c21 = f32x4.add(c21, v128.load(c + 2 * ldc, 16));
    c30 = f32x4.add(c30, v128.load(c + 3 * ldc));
    c31 = f32x4.add(c31, v128.load(c + 3 * ldc, 16));
  }
  v128.store(c, c00);
  v128.store(c, c01, 16);
  v128.store(c + ldc, c10);
  v128.store(c + ldc, c11, 16);
  v128.store(c + 2 * ldc, c20);
  v128.store(c + 2 * ldc, c21, 16);
  v128.store(c + 3 * ldc, c30);
  v128.store(c + 3 * ldc, c31, 16);
}

// ---------------------------------------------------------------------------------------------
// entries

/** Floats of op(A) (m rows) or op(B) (n columns) packed whole over depth k: whole panels of MR (NR). */
export function packedFloats(extent: i32, k: i32, panel: i32): i32 {
  return ((extent + panel - 1) / panel) * panel * k;
}

/**
 * Where block (i0 of width `w`, p0) of a whole-packed operand starts, in floats: every earlier block
 * along `extent` is `blockW` wide (a multiple of the panel) and k deep; within a block, each earlier
 * KC slice holds the block's padded width times its depth.
 */
// @ts-expect-error: decorator
@inline
function packedAt(i0: i32, w: i32, p0: i32, k: i32, panel: i32): usize {
  const wPad = ((w + panel - 1) / panel) * panel;
  return <usize>i0 * <usize>k + <usize>p0 * <usize>wPad;
}

/**
 * Packs all of op(A) [m, k] at `dst` in gemm's block order (MC-row blocks, each in KC slices of
 * MR-row panels), so the participants of a call split by columns share one packing.
 */
export function packAWhole(transA: i32, m: i32, k: i32, a: usize, dst: usize): void {
  for (let ic = 0; ic < m; ic += MC) {
    const mc = min(MC, m - ic);
    for (let pc = 0; pc < k; pc += KC) {
      packA(transA, m, k, a, ic, mc, pc, min(KC, k - pc), dst + (packedAt(ic, mc, pc, k, MR) << 2));
    }
  }
}

/** Packs all of op(B) [k, n] at `dst` in gemm's block order (NC-column blocks, KC slices, NR panels). */
export function packBWhole(transB: i32, n: i32, k: i32, b: usize, dst: usize): void {
  for (let jc = 0; jc < n; jc += NC) {
    const nc = min(NC, n - jc);
    for (let pc = 0; pc < k; pc += KC) {
      packB(transB, n, k, b, pc, min(KC, k - pc), jc, nc, dst + (packedAt(jc, nc, pc, k, NR) << 2));
    }
  }
}

/**
 * C[i0:i1, j0:j1] = op(A) op(B) over the full k, blocked and packed; `work` is this thread's
 * `workBytes()` area. C has row stride n. `aWhole` / `bWhole`: op(A) / op(B) already packed whole
 * (packAWhole, packBWhole) at that address, or 0 to pack each block here. Either way every block
 * holds the same numbers and the micro-kernel sums in the same order, so results are identical.
 */
export function gemm(
  transA: i32,
  transB: i32,
  m: i32,
  n: i32,
  k: i32,
  a: usize,
  b: usize,
  c: usize,
  i0: i32,
  i1: i32,
  j0: i32,
  j1: i32,
  work: usize,
  aWhole: usize,
  bWhole: usize,
): void {
  if (i1 <= i0 || j1 <= j0) return;
  const ldc = <usize>n << 2;
  if (k <= 0) {
    for (let i = i0; i < i1; i++) memory.fill(c + <usize>i * ldc + (<usize>j0 << 2), 0, <usize>(j1 - j0) << 2);
    return;
  }
  // whole-packed blocks are addressed by the block grid from 0, so a split must start on it
  if (aWhole && i0 % MC != 0) unreachable();
  if (bWhole && j0 % NC != 0) unreachable();
  const tile = work + <usize>AP_BYTES + <usize>BP_BYTES;
  for (let jc = j0; jc < j1; jc += NC) {
    const nc = min(NC, j1 - jc);
    for (let pc = 0; pc < k; pc += KC) {
      const kc = min(KC, k - pc);
      const accumulate = pc > 0 ? 1 : 0;
      let bpBuf = work + <usize>AP_BYTES;
      if (bWhole) bpBuf = bWhole + (packedAt(jc, min(NC, n - jc), pc, k, NR) << 2);
      else packB(transB, n, k, b, pc, kc, jc, nc, bpBuf);
      for (let ic = i0; ic < i1; ic += MC) {
        const mc = min(MC, i1 - ic);
        let apBuf = work;
        if (aWhole) apBuf = aWhole + (packedAt(ic, min(MC, m - ic), pc, k, MR) << 2);
        else packA(transA, m, k, a, ic, mc, pc, kc, apBuf);
        for (let ir = 0; ir < mc; ir += MR) {
          const rows = min(MR, mc - ir);
          const ap = apBuf + <usize>ir * <usize>kc * 4;
          for (let jr = 0; jr < nc; jr += NR) {
            const cols = min(NR, nc - jr);
            const bp = bpBuf + <usize>jr * <usize>kc * 4;
            const cp = c + <usize>(ic + ir) * ldc + (<usize>(jc + jr) << 2);
            if (rows == MR && cols == NR) {
              micro(kc, ap, bp, cp, ldc, accumulate);
            } else {
              micro(kc, ap, bp, tile, NR * 4, 0);
              for (let r = 0; r < rows; r++) {
                for (let q = 0; q < cols; q++) {
                  const dst = cp + <usize>r * ldc + (<usize>q << 2);
                  const v = load<f32>(tile + (<usize>(r * NR + q) << 2));
                  store<f32>(dst, accumulate ? load<f32>(dst) + v : v);
                }
              }
            }
          }
        }
      }
    }
  }
}

/** Sum of the four lanes of each of c0..c3, as one vector [sum c0, sum c1, sum c2, sum c3]. */
// @ts-expect-error: decorator
@inline
function hsum4(c0: v128, c1: v128, c2: v128, c3: v128): v128 {
  const s01 = f32x4.add(f32x4.shuffle(c0, c1, 0, 4, 1, 5), f32x4.shuffle(c0, c1, 2, 6, 3, 7));
  const s23 = f32x4.add(f32x4.shuffle(c2, c3, 0, 4, 1, 5), f32x4.shuffle(c2, c3, 2, 6, 3, 7));
  return f32x4.add(f32x4.shuffle(s01, s23, 0, 1, 4, 5), f32x4.shuffle(s01, s23, 2, 3, 6, 7));
}

/** One dot product of length k between contiguous rows x and y. */
function dot(x: usize, y: usize, k: i32): f32 {
  let acc0 = f32x4.splat(0);
  let acc1 = f32x4.splat(0);
  let p = 0;
  for (; p + 8 <= k; p += 8) {
    const o = <usize>p << 2;
    acc0 = madd(v128.load(x + o), v128.load(y + o), acc0);
    acc1 = madd(v128.load(x + o, 16), v128.load(y + o, 16), acc1);
  }
  for (; p + 4 <= k; p += 4) {
    const o = <usize>p << 2;
    acc0 = madd(v128.load(x + o), v128.load(y + o), acc0);
  }
  const s = f32x4.add(acc0, acc1);
  let r = f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + (f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3));
  for (; p < k; p++) r += load<f32>(x + (<usize>p << 2)) * load<f32>(y + (<usize>p << 2));
  return r;
}

/**
 * C[i0:i1, j0:j1] = A B^T with A [m, k] and B [n, k] both row-major (no transA, transB): dot
 * products vectorised along k, 2 rows x 4 columns at a time. For few rows, where packing B would
 * cost as much as the product.
 */
export function gemmDot(m: i32, n: i32, k: i32, a: usize, b: usize, c: usize, i0: i32, i1: i32, j0: i32, j1: i32): void {
  const row = <usize>k << 2;
  const ldc = <usize>n << 2;
  const k4 = k & ~3;
  let j = j0;
  for (; j + 4 <= j1; j += 4) {
    const b0 = b + <usize>j * row;
    let i = i0;
    for (; i + 2 <= i1; i += 2) {
      const a0 = a + <usize>i * row;
      let c00 = f32x4.splat(0);
      let c01 = f32x4.splat(0);
      let c02 = f32x4.splat(0);
      let c03 = f32x4.splat(0);
      let c10 = f32x4.splat(0);
      let c11 = f32x4.splat(0);
      let c12 = f32x4.splat(0);
      let c13 = f32x4.splat(0);
      for (let p = 0; p < k4; p += 4) {
        const o = <usize>p << 2;
        const x0 = v128.load(a0 + o);
        const x1 = v128.load(a0 + row + o);
        let y = v128.load(b0 + o);
        c00 = madd(x0, y, c00);
        c10 = madd(x1, y, c10);
        y = v128.load(b0 + row + o);
        c01 = madd(x0, y, c01);
        c11 = madd(x1, y, c11);
        y = v128.load(b0 + 2 * row + o);
        c02 = madd(x0, y, c02);
        c12 = madd(x1, y, c12);
        y = v128.load(b0 + 3 * row + o);
        c03 = madd(x0, y, c03);
        c13 = madd(x1, y, c13);
      }
      let s0 = hsum4(c00, c01, c02, c03);
      let s1 = hsum4(c10, c11, c12, c13);
      for (let p = k4; p < k; p++) {
        const o = <usize>p << 2;
        const x0 = f32x4.splat(load<f32>(a0 + o));
        const x1 = f32x4.splat(load<f32>(a0 + row + o));
        const y = f32x4.replace_lane(
          f32x4.replace_lane(
            f32x4.replace_lane(f32x4.splat(load<f32>(b0 + o)), 1, load<f32>(b0 + row + o)),
            2,
            load<f32>(b0 + 2 * row + o),
          ),
          3,
          load<f32>(b0 + 3 * row + o),
        );
        s0 = madd(x0, y, s0);
        s1 = madd(x1, y, s1);
      }
      const cp = c + <usize>i * ldc + (<usize>j << 2);
      v128.store(cp, s0);
      v128.store(cp + ldc, s1);
    }
    for (; i < i1; i++) {
      const a0 = a + <usize>i * row;
      const cp = c + <usize>i * ldc + (<usize>j << 2);
      for (let q = 0; q < 4; q++) store<f32>(cp + (<usize>q << 2), dot(a0, b0 + <usize>q * row, k));
    }
  }
  for (; j < j1; j++) {
    const b0 = b + <usize>j * row;
    for (let i = i0; i < i1; i++) store<f32>(c + <usize>i * ldc + (<usize>j << 2), dot(a + <usize>i * row, b0, k));
  }
}
