/**
 * The non-matmul ops of rmt's CPU backends in WebAssembly SIMD (AssemblyScript): attention forward
 * and backward, cross-entropy, RMSNorm forward and backward, rotary embedding, SwiGLU forward and
 * backward, AdamW, sum of squares, elementwise add. Semantics are the kernel interface's
 * (shared/kernels/backend.ts; ground truth: shared/kernels/reference.ts).
 *
 * One entry, `chunk(args, lo, hi)`: `args` is the byte address of a parameter block in the
 * (imported, shared) linear memory, written by the host wrapper (shared/kernels/wasm/ops.ts): word 0
 * is the op, the following words its sizes, byte addresses and f32 scalars. [lo, hi) is a range of
 * the op's work units (rows, elements, column or head groups); units write disjoint outputs, so the
 * main thread and the workers of the pool can share one op by claiming ranges.
 *
 * exp is a SIMD polynomial (Cody-Waite range reduction, degree-6 Taylor on |r| <= ln2/2, about 1 ulp
 * in the normal range); it returns exactly 0 below -87.33 (including -inf: masked scores).
 *
 * Built twice like matmul.ts (scripts/build-wasm.mjs): plain SIMD and relaxed SIMD (fused madd).
 */

export const OP_ADD: i32 = 1;
export const OP_SWIGLU: i32 = 2;
export const OP_SWIGLU_BWD: i32 = 3;
export const OP_ADAMW: i32 = 4;
export const OP_SUMSQ: i32 = 5;
export const OP_RMSNORM: i32 = 6;
export const OP_RMSNORM_DX: i32 = 7;
export const OP_RMSNORM_DW: i32 = 8;
export const OP_ROPE: i32 = 9;
export const OP_ATTN: i32 = 10;
export const OP_ATTN_BWD: i32 = 11;
export const OP_CE: i32 = 12;

/** Elements per partial sum of OP_SUMSQ (one f64 partial per block). */
export const SUMSQ_BLOCK: i32 = 4096;

// @ts-expect-error: decorator
@inline
function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

// parameter block accessors: word i of the block at `a`
// @ts-expect-error: decorator
@inline
function wi(a: usize, i: i32): i32 {
  return load<i32>(a + (<usize>i << 2));
}
// @ts-expect-error: decorator
@inline
function wp(a: usize, i: i32): usize {
  return <usize>load<u32>(a + (<usize>i << 2));
}
// @ts-expect-error: decorator
@inline
function wf(a: usize, i: i32): f32 {
  return load<f32>(a + (<usize>i << 2));
}
// @ts-expect-error: decorator
@inline
function at(base: usize, i: i32): usize {
  return base + (<usize>i << 2);
}

// ---------------------------------------------------------------------------------------------
// math

/**
 * e^x per lane; exactly 0 below -87.33 (and for -inf), x clamped above at 88.37; NaN stays NaN.
 * pmin/pmax (one minps/maxps) instead of min/max, and 2^n from the bits of x*log2(e) + 1.5*2^23 + 127
 * (the rounding to an integer happens in the add), which avoids V8's long lowerings of f32x4.min/max
 * and i32x4.trunc_sat.
 */
// @ts-expect-error: decorator
@inline
function expv(x: v128): v128 {
  const lo = f32x4.splat(-87.33654);
  const under = f32x4.lt(x, lo);
  const xc = f32x4.pmax(f32x4.pmin(x, f32x4.splat(88.37626)), lo);
  const magic = f32x4.splat(12583039.0); // 1.5 * 2^23 + 127
  const t = f32x4.add(f32x4.mul(xc, f32x4.splat(1.44269504089)), magic);
  const nr = f32x4.sub(t, magic); // round(x * log2 e)
  let r = f32x4.sub(xc, f32x4.mul(nr, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(nr, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.0 / 720.0);
  p = madd(p, r, f32x4.splat(1.0 / 120.0));
  p = madd(p, r, f32x4.splat(1.0 / 24.0));
  p = madd(p, r, f32x4.splat(1.0 / 6.0));
  p = madd(p, r, f32x4.splat(0.5));
  p = madd(p, r, f32x4.splat(1.0));
  p = madd(p, r, f32x4.splat(1.0));
  const scale = i32x4.shl(t, 23);
  return v128.bitselect(f32x4.splat(0), f32x4.mul(p, scale), under);
}

// @ts-expect-error: decorator
@inline
function exps(x: f32): f32 {
  return f32x4.extract_lane(expv(f32x4.splat(x)), 0);
}

// @ts-expect-error: decorator
@inline
function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

// @ts-expect-error: decorator
@inline
function hmax(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/** Dot product of n floats at x and y. */
// @ts-expect-error: decorator
@inline
function dot(x: usize, y: usize, n: i32): f32 {
  let acc0 = f32x4.splat(0);
  let acc1 = f32x4.splat(0);
  let d = 0;
  for (; d + 8 <= n; d += 8) {
    const o = <usize>d << 2;
    acc0 = madd(v128.load(x + o), v128.load(y + o), acc0);
    acc1 = madd(v128.load(x + o, 16), v128.load(y + o, 16), acc1);
  }
  for (; d + 4 <= n; d += 4) {
    const o = <usize>d << 2;
    acc0 = madd(v128.load(x + o), v128.load(y + o), acc0);
  }
  let s = hsum(f32x4.add(acc0, acc1));
  for (; d < n; d++) s += load<f32>(at(x, d)) * load<f32>(at(y, d));
  return s;
}

/** y[0:n] += a * x[0:n]. */
// @ts-expect-error: decorator
@inline
function axpy(a: f32, x: usize, y: usize, n: i32): void {
  const av = f32x4.splat(a);
  let d = 0;
  for (; d + 4 <= n; d += 4) {
    const o = <usize>d << 2;
    v128.store(y + o, madd(av, v128.load(x + o), v128.load(y + o)));
  }
  for (; d < n; d++) store<f32>(at(y, d), load<f32>(at(y, d)) + a * load<f32>(at(x, d)));
}

function zero(p: usize, n: i32): void {
  if (n > 0) memory.fill(p, 0, <usize>n << 2);
}

// ---------------------------------------------------------------------------------------------
// elementwise: units are elements

/** [op, n, a, b, out]: out = a + b. */
function add(a: usize, lo: i32, hi: i32): void {
  const x = wp(a, 2);
  const y = wp(a, 3);
  const out = wp(a, 4);
  let i = lo;
  for (; i + 4 <= hi; i += 4) v128.store(at(out, i), f32x4.add(v128.load(at(x, i)), v128.load(at(y, i))));
  for (; i < hi; i++) store<f32>(at(out, i), load<f32>(at(x, i)) + load<f32>(at(y, i)));
}

// @ts-expect-error: decorator
@inline
function sigmoid(g: v128): v128 {
  const one = f32x4.splat(1);
  return f32x4.div(one, f32x4.add(one, expv(f32x4.neg(g))));
}

/** [op, n, gate, up, out]: out = silu(gate) * up. */
function swiglu(a: usize, lo: i32, hi: i32): void {
  const gp = wp(a, 2);
  const up = wp(a, 3);
  const out = wp(a, 4);
  let i = lo;
  for (; i + 4 <= hi; i += 4) {
    const g = v128.load(at(gp, i));
    v128.store(at(out, i), f32x4.mul(f32x4.mul(g, sigmoid(g)), v128.load(at(up, i))));
  }
  for (; i < hi; i++) {
    const g = f32x4.splat(load<f32>(at(gp, i)));
    const h = f32x4.mul(f32x4.mul(g, sigmoid(g)), f32x4.splat(load<f32>(at(up, i))));
    store<f32>(at(out, i), f32x4.extract_lane(h, 0));
  }
}

// @ts-expect-error: decorator
@inline
function swigluBwd4(dh: v128, g: v128, u: v128, dgp: usize, dup: usize): void {
  const one = f32x4.splat(1);
  const sig = sigmoid(g);
  v128.store(dup, f32x4.mul(f32x4.mul(dh, g), sig));
  const t = madd(g, f32x4.sub(one, sig), one);
  v128.store(dgp, f32x4.mul(f32x4.mul(f32x4.mul(dh, u), sig), t));
}

/** [op, n, dh, gate, up, dGate, dUp]. */
function swigluBwd(a: usize, lo: i32, hi: i32): void {
  const dh = wp(a, 2);
  const gp = wp(a, 3);
  const up = wp(a, 4);
  const dg = wp(a, 5);
  const du = wp(a, 6);
  let i = lo;
  for (; i + 4 <= hi; i += 4) {
    swigluBwd4(v128.load(at(dh, i)), v128.load(at(gp, i)), v128.load(at(up, i)), at(dg, i), at(du, i));
  }
  for (; i < hi; i++) {
    const g = load<f32>(at(gp, i));
    const dhv = load<f32>(at(dh, i));
    const sig: f32 = 1 / (1 + exps(-g));
    store<f32>(at(du, i), dhv * g * sig);
    store<f32>(at(dg, i), dhv * load<f32>(at(up, i)) * sig * (1 + g * (1 - sig)));
  }
}

/**
 * [op, n, p, g, m, v, np, nm, nv, hp...] with hp (f32, words 10..19) = [beta1, 1-beta1, beta2,
 * 1-beta2, gradScale, 1-lr*wd, lr, bc1, bc2, eps].
 */
function adamw(a: usize, lo: i32, hi: i32): void {
  const pp = wp(a, 2);
  const gp = wp(a, 3);
  const mp = wp(a, 4);
  const vp = wp(a, 5);
  const np = wp(a, 6);
  const nm = wp(a, 7);
  const nv = wp(a, 8);
  const b1 = wf(a, 10);
  const b1c = wf(a, 11);
  const b2 = wf(a, 12);
  const b2c = wf(a, 13);
  const gs = wf(a, 14);
  const decay = wf(a, 15);
  const lr = wf(a, 16);
  const bc1 = wf(a, 17);
  const bc2 = wf(a, 18);
  const eps = wf(a, 19);
  let i = lo;
  const B1 = f32x4.splat(b1);
  const B1c = f32x4.splat(b1c);
  const B2 = f32x4.splat(b2);
  const B2c = f32x4.splat(b2c);
  const GS = f32x4.splat(gs);
  const DEC = f32x4.splat(decay);
  const LR = f32x4.splat(lr);
  const BC1 = f32x4.splat(bc1);
  const BC2 = f32x4.splat(bc2);
  const EPS = f32x4.splat(eps);
  for (; i + 4 <= hi; i += 4) {
    const grad = f32x4.mul(v128.load(at(gp, i)), GS);
    const m = f32x4.add(f32x4.mul(B1, v128.load(at(mp, i))), f32x4.mul(B1c, grad));
    const v = f32x4.add(f32x4.mul(B2, v128.load(at(vp, i))), f32x4.mul(f32x4.mul(B2c, grad), grad));
    const step = f32x4.div(f32x4.mul(LR, f32x4.div(m, BC1)), f32x4.add(f32x4.sqrt(f32x4.div(v, BC2)), EPS));
    v128.store(at(nm, i), m);
    v128.store(at(nv, i), v);
    v128.store(at(np, i), f32x4.sub(f32x4.mul(v128.load(at(pp, i)), DEC), step));
  }
  for (; i < hi; i++) {
    const grad = load<f32>(at(gp, i)) * gs;
    const m = b1 * load<f32>(at(mp, i)) + b1c * grad;
    const v = b2 * load<f32>(at(vp, i)) + b2c * grad * grad;
    store<f32>(at(nm, i), m);
    store<f32>(at(nv, i), v);
    store<f32>(at(np, i), load<f32>(at(pp, i)) * decay - (lr * (m / bc1)) / (Mathf.sqrt(v / bc2) + eps));
  }
}

/** [op, n, x, partials(f64)]: units are blocks of SUMSQ_BLOCK elements; partial[blk] = sum x^2. */
function sumsq(a: usize, lo: i32, hi: i32): void {
  const n = wi(a, 1);
  const x = wp(a, 2);
  const part = wp(a, 3);
  for (let blk = lo; blk < hi; blk++) {
    const s = blk * SUMSQ_BLOCK;
    const e = min(n, s + SUMSQ_BLOCK);
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let i = s;
    for (; i + 8 <= e; i += 8) {
      const v0 = v128.load(at(x, i));
      const v1 = v128.load(at(x, i), 16);
      a0 = madd(v0, v0, a0);
      a1 = madd(v1, v1, a1);
    }
    let t: f64 = <f64>hsum(f32x4.add(a0, a1));
    for (; i < e; i++) {
      const v = <f64>load<f32>(at(x, i));
      t += v * v;
    }
    store<f64>(part + (<usize>blk << 3), t);
  }
}

// ---------------------------------------------------------------------------------------------
// rmsnorm: units are rows (dw: columns)

/** [op, rows, dim, x, w, y, rstd, eps]. */
function rmsnorm(a: usize, lo: i32, hi: i32): void {
  const dim = wi(a, 2);
  const x = wp(a, 3);
  const w = wp(a, 4);
  const y = wp(a, 5);
  const rstd = wp(a, 6);
  const eps = <f64>wf(a, 7);
  for (let r = lo; r < hi; r++) {
    const xr = x + <usize>r * <usize>dim * 4;
    const yr = y + <usize>r * <usize>dim * 4;
    const ss = <f64>dot(xr, xr, dim);
    const rs = <f32>(1.0 / Math.sqrt(ss / <f64>dim + eps));
    store<f32>(at(rstd, r), rs);
    const rv = f32x4.splat(rs);
    let c = 0;
    for (; c + 4 <= dim; c += 4) v128.store(at(yr, c), f32x4.mul(f32x4.mul(v128.load(at(xr, c)), rv), v128.load(at(w, c))));
    for (; c < dim; c++) store<f32>(at(yr, c), load<f32>(at(xr, c)) * rs * load<f32>(at(w, c)));
  }
}

/** [op, rows, dim, dy, x, w, rstd, dx]: dx = rs * (dy*w - x * rs^2 * mean(dy*w*x)). */
function rmsnormDx(a: usize, lo: i32, hi: i32): void {
  const dim = wi(a, 2);
  const dy = wp(a, 3);
  const x = wp(a, 4);
  const w = wp(a, 5);
  const rstd = wp(a, 6);
  const dx = wp(a, 7);
  for (let r = lo; r < hi; r++) {
    const off = <usize>r * <usize>dim * 4;
    const dyr = dy + off;
    const xr = x + off;
    const dxr = dx + off;
    let acc = f32x4.splat(0);
    let c = 0;
    for (; c + 4 <= dim; c += 4) acc = madd(f32x4.mul(v128.load(at(dyr, c)), v128.load(at(w, c))), v128.load(at(xr, c)), acc);
    let d = hsum(acc);
    for (; c < dim; c++) d += load<f32>(at(dyr, c)) * load<f32>(at(w, c)) * load<f32>(at(xr, c));
    const rs = load<f32>(at(rstd, r));
    const coef = (rs * rs * d) / <f32>dim;
    const RS = f32x4.splat(rs);
    const CO = f32x4.splat(coef);
    c = 0;
    for (; c + 4 <= dim; c += 4) {
      const g = f32x4.mul(v128.load(at(dyr, c)), v128.load(at(w, c)));
      v128.store(at(dxr, c), f32x4.mul(RS, f32x4.sub(g, f32x4.mul(v128.load(at(xr, c)), CO))));
    }
    for (; c < dim; c++) {
      store<f32>(at(dxr, c), rs * (load<f32>(at(dyr, c)) * load<f32>(at(w, c)) - load<f32>(at(xr, c)) * coef));
    }
  }
}

/** [op, rows, dim, dy, x, rstd, dw]: units are columns; dw[c] = sum_r dy * x * rstd[r]. */
function rmsnormDw(a: usize, lo: i32, hi: i32): void {
  const rows = wi(a, 1);
  const dim = wi(a, 2);
  const dy = wp(a, 3);
  const x = wp(a, 4);
  const rstd = wp(a, 5);
  const dw = wp(a, 6);
  let c = lo;
  for (; c + 4 <= hi; c += 4) {
    let acc = f32x4.splat(0);
    for (let r = 0; r < rows; r++) {
      const o = (<usize>r * <usize>dim + <usize>c) << 2;
      acc = madd(f32x4.mul(v128.load(dy + o), v128.load(x + o)), f32x4.splat(load<f32>(at(rstd, r))), acc);
    }
    v128.store(at(dw, c), acc);
  }
  for (; c < hi; c++) {
    let acc: f32 = 0;
    for (let r = 0; r < rows; r++) {
      const o = (<usize>r * <usize>dim + <usize>c) << 2;
      acc += load<f32>(dy + o) * load<f32>(x + o) * load<f32>(at(rstd, r));
    }
    store<f32>(at(dw, c), acc);
  }
}

// ---------------------------------------------------------------------------------------------
// rope: units are rows

/** [op, rows, heads, hd, x, pos(i32), cos, sin, out, sign]; tables [position, hd/2]. */
function rope(a: usize, lo: i32, hi: i32): void {
  const heads = wi(a, 2);
  const hd = wi(a, 3);
  const x = wp(a, 4);
  const pos = wp(a, 5);
  const cosT = wp(a, 6);
  const sinT = wp(a, 7);
  const out = wp(a, 8);
  const sign = wf(a, 9);
  const half = hd >> 1;
  const SG = f32x4.splat(sign);
  for (let r = lo; r < hi; r++) {
    const p = load<i32>(at(pos, r));
    const cr = cosT + <usize>p * <usize>half * 4;
    const sr = sinT + <usize>p * <usize>half * 4;
    for (let h = 0; h < heads; h++) {
      const base = (<usize>r * <usize>heads + <usize>h) * <usize>hd * 4;
      const xa = x + base;
      const xb = xa + (<usize>half << 2);
      const oa = out + base;
      const ob = oa + (<usize>half << 2);
      let i = 0;
      for (; i + 4 <= half; i += 4) {
        const c = v128.load(at(cr, i));
        const s = f32x4.mul(v128.load(at(sr, i)), SG);
        const va = v128.load(at(xa, i));
        const vb = v128.load(at(xb, i));
        v128.store(at(oa, i), f32x4.sub(f32x4.mul(va, c), f32x4.mul(vb, s)));
        v128.store(at(ob, i), f32x4.add(f32x4.mul(vb, c), f32x4.mul(va, s)));
      }
      for (; i < half; i++) {
        const c = load<f32>(at(cr, i));
        const s = load<f32>(at(sr, i)) * sign;
        const va = load<f32>(at(xa, i));
        const vb = load<f32>(at(xb, i));
        store<f32>(at(oa, i), va * c - vb * s);
        store<f32>(at(ob, i), vb * c + va * s);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// attention. q/dOut/out [B, tq, H, hd], k/v [B, tk, KV, hd], probs [B, H, tq, tk]; kValid u8 [B*tk],
// qOff i32 [B]. Query row i of sequence b sees slot j iff kValid[b*tk+j] && j <= i + qOff[b].

/**
 * [op, B, tq, tk, H, KV, hd, q, k, v, kValid, qOff, out, probs, scale]: units are probability rows
 * (b, h, i) in probs order.
 */
function attention(a: usize, lo: i32, hi: i32): void {
  const tq = wi(a, 2);
  const tk = wi(a, 3);
  const H = wi(a, 4);
  const KV = wi(a, 5);
  const hd = wi(a, 6);
  const q = wp(a, 7);
  const k = wp(a, 8);
  const v = wp(a, 9);
  const kValid = wp(a, 10);
  const qOff = wp(a, 11);
  const out = wp(a, 12);
  const probs = wp(a, 13);
  const scale = wf(a, 14);
  const G = H / KV;
  const kvStride = <usize>KV * <usize>hd * 4;
  const NEG = <f32>(-Infinity);
  for (let row = lo; row < hi; row++) {
    const bh = row / tq;
    const i = row - bh * tq;
    const b = bh / H;
    const h = bh - b * H;
    const kh = h / G;
    const prow = probs + <usize>row * <usize>tk * 4;
    const qo = (((<usize>b * <usize>tq + <usize>i) * <usize>H + <usize>h) * <usize>hd) << 2;
    const qp = q + qo;
    const op = out + qo;
    const kb = k + (((<usize>b * <usize>tk) * <usize>KV + <usize>kh) * <usize>hd << 2);
    const vb = v + (((<usize>b * <usize>tk) * <usize>KV + <usize>kh) * <usize>hd << 2);
    const valid = kValid + <usize>b * <usize>tk;
    const jEnd = max(0, min(tk, i + load<i32>(at(qOff, b)) + 1));
    let mx = NEG;
    for (let j = 0; j < jEnd; j++) {
      let s = NEG;
      if (load<u8>(valid + <usize>j) != 0) {
        s = dot(qp, kb + <usize>j * kvStride, hd) * scale;
        mx = max(mx, s);
      }
      store<f32>(at(prow, j), s);
    }
    zero(at(prow, jEnd), tk - jEnd);
    zero(op, hd);
    if (mx == NEG) {
      zero(prow, jEnd);
      continue;
    }
    const MX = f32x4.splat(mx);
    let sv = f32x4.splat(0);
    let j = 0;
    for (; j + 4 <= jEnd; j += 4) {
      const e = expv(f32x4.sub(v128.load(at(prow, j)), MX));
      v128.store(at(prow, j), e);
      sv = f32x4.add(sv, e);
    }
    let sum = hsum(sv);
    for (; j < jEnd; j++) {
      const e = exps(load<f32>(at(prow, j)) - mx);
      store<f32>(at(prow, j), e);
      sum += e;
    }
    const inv: f32 = 1 / sum;
    for (j = 0; j < jEnd; j++) {
      const p = load<f32>(at(prow, j)) * inv;
      store<f32>(at(prow, j), p);
      if (p != 0) axpy(p, vb + <usize>j * kvStride, op, hd);
    }
  }
}

/**
 * [op, B, tq, tk, H, KV, hd, dOut, q, k, v, probs, kValid, qOff, dq, dk, dv, scale, work]: units
 * are (b, kv head) pairs, which own dk/dv[b, :, kh, :] and dq[b, :, h, :] for the group's heads;
 * `work` holds tk floats of dP per unit.
 */
function attentionBwd(a: usize, lo: i32, hi: i32): void {
  const tq = wi(a, 2);
  const tk = wi(a, 3);
  const H = wi(a, 4);
  const KV = wi(a, 5);
  const hd = wi(a, 6);
  const dOut = wp(a, 7);
  const q = wp(a, 8);
  const k = wp(a, 9);
  const v = wp(a, 10);
  const probs = wp(a, 11);
  const dq = wp(a, 14);
  const dk = wp(a, 15);
  const dv = wp(a, 16);
  const scale = wf(a, 17);
  const work = wp(a, 18);
  const G = H / KV;
  const kvStride = <usize>KV * <usize>hd * 4;
  for (let u = lo; u < hi; u++) {
    const b = u / KV;
    const kh = u - b * KV;
    const kvOff = ((<usize>b * <usize>tk) * <usize>KV + <usize>kh) * <usize>hd << 2;
    const kb = k + kvOff;
    const vb = v + kvOff;
    const dkb = dk + kvOff;
    const dvb = dv + kvOff;
    for (let j = 0; j < tk; j++) {
      zero(dkb + <usize>j * kvStride, hd);
      zero(dvb + <usize>j * kvStride, hd);
    }
    const dp = work + <usize>u * <usize>tk * 4;
    for (let g = 0; g < G; g++) {
      const h = kh * G + g;
      for (let i = 0; i < tq; i++) {
        const prow = probs + (((<usize>b * <usize>H + <usize>h) * <usize>tq + <usize>i) * <usize>tk << 2);
        const qo = (((<usize>b * <usize>tq + <usize>i) * <usize>H + <usize>h) * <usize>hd) << 2;
        const dop = dOut + qo;
        const qp = q + qo;
        const dqp = dq + qo;
        zero(dqp, hd);
        let pdp: f32 = 0;
        for (let j = 0; j < tk; j++) {
          const p = load<f32>(at(prow, j));
          let d: f32 = 0;
          if (p != 0) {
            d = dot(dop, vb + <usize>j * kvStride, hd);
            pdp += p * d;
          }
          store<f32>(at(dp, j), d);
        }
        for (let j = 0; j < tk; j++) {
          const p = load<f32>(at(prow, j));
          if (p == 0) continue;
          const ds = p * (load<f32>(at(dp, j)) - pdp) * scale;
          const ko = <usize>j * kvStride;
          axpy(ds, kb + ko, dqp, hd);
          axpy(ds, qp, dkb + ko, hd);
          axpy(p, dop, dvb + ko, hd);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// cross-entropy: units are rows

/**
 * [op, rows, vocab, logits, targets(i32), weights(f32), nll, dlogits]: nll = logsumexp - logit[t],
 * dlogits = w * (softmax - onehot(t)); a negative target gives nll 0 and a zero gradient row.
 */
function crossEntropy(a: usize, lo: i32, hi: i32): void {
  const V = wi(a, 2);
  const logits = wp(a, 3);
  const targets = wp(a, 4);
  const weights = wp(a, 5);
  const nll = wp(a, 6);
  const dl = wp(a, 7);
  for (let r = lo; r < hi; r++) {
    const l = logits + <usize>r * <usize>V * 4;
    const d = dl + <usize>r * <usize>V * 4;
    const t = load<i32>(at(targets, r));
    if (t < 0) {
      store<f32>(at(nll, r), 0);
      zero(d, V);
      continue;
    }
    let mv = f32x4.splat(<f32>(-Infinity));
    let c = 0;
    for (; c + 4 <= V; c += 4) mv = f32x4.pmax(mv, v128.load(at(l, c)));
    let mx = hmax(mv);
    for (; c < V; c++) mx = max(mx, load<f32>(at(l, c)));
    const MX = f32x4.splat(mx);
    let sv = f32x4.splat(0);
    c = 0;
    for (; c + 4 <= V; c += 4) {
      const e = expv(f32x4.sub(v128.load(at(l, c)), MX));
      v128.store(at(d, c), e);
      sv = f32x4.add(sv, e);
    }
    let sum = <f64>hsum(sv);
    for (; c < V; c++) {
      const e = exps(load<f32>(at(l, c)) - mx);
      store<f32>(at(d, c), e);
      sum += <f64>e;
    }
    const lse = <f64>mx + Math.log(sum);
    store<f32>(at(nll, r), <f32>(lse - <f64>load<f32>(at(l, t))));
    const w = load<f32>(at(weights, r));
    const f = <f32>(<f64>w / sum);
    const F = f32x4.splat(f);
    c = 0;
    for (; c + 4 <= V; c += 4) v128.store(at(d, c), f32x4.mul(v128.load(at(d, c)), F));
    for (; c < V; c++) store<f32>(at(d, c), load<f32>(at(d, c)) * f);
    store<f32>(at(d, t), load<f32>(at(d, t)) - w);
  }
}

// ---------------------------------------------------------------------------------------------
// entry

/** Runs units [lo, hi) of the op described by the parameter block at `args`. */
export function chunk(args: usize, lo: i32, hi: i32): void {
  switch (load<i32>(args)) {
    case OP_ADD:
      add(args, lo, hi);
      break;
    case OP_SWIGLU:
      swiglu(args, lo, hi);
      break;
    case OP_SWIGLU_BWD:
      swigluBwd(args, lo, hi);
      break;
    case OP_ADAMW:
      adamw(args, lo, hi);
      break;
    case OP_SUMSQ:
      sumsq(args, lo, hi);
      break;
    case OP_RMSNORM:
      rmsnorm(args, lo, hi);
      break;
    case OP_RMSNORM_DX:
      rmsnormDx(args, lo, hi);
      break;
    case OP_RMSNORM_DW:
      rmsnormDw(args, lo, hi);
      break;
    case OP_ROPE:
      rope(args, lo, hi);
      break;
    case OP_ATTN:
      attention(args, lo, hi);
      break;
    case OP_ATTN_BWD:
      attentionBwd(args, lo, hi);
      break;
    case OP_CE:
      crossEntropy(args, lo, hi);
      break;
    default:
      unreachable();
  }
}
