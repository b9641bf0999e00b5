/**
 * Kernel bodies of the webgpu backend. gpu.js compiles these functions from their source text to
 * WGSL, so they obey its kernel dialect, not TypeScript's:
 *
 * - Every kernel has a 1-D output; `this.thread.x` is the flat output index and row/column indices are
 *   recovered with `divFloor` (below). All tensors are flat, row-major.
 * - Integer shapes come in as `this.constants` (compiled with `strictIntegers`, so they are integers in
 *   the generated code); float scalars come in as a small `hp` array argument so that changing them
 *   (learning rate, step) does not recompile the kernel.
 * - gpu.js stores every local variable as f32 (an integer initialiser "decays" to float). f32 holds
 *   integers exactly only below 2^24, so large flat indices are never stored in a variable: they are
 *   written inline from integer pieces (`this.thread.x`, constants, loop counters, `(v | 0)`), which
 *   gpu.js keeps in i32. Variables hold only small values: row, column, head indices.
 * - `/` and `%` are always float division in gpu.js; WGSL's f32 division is not even correctly
 *   rounded (2.5 ulp). `divFloor` computes an exact integer quotient with integer correction steps.
 * - No nested functions (tsx's keepNames inserts `__name` calls into them) and no method shorthand.
 * - Integer host data (ids, positions, masks) arrives as Float32Array; `(v | 0)` turns it into i32.
 */

export interface KernelThis {
  thread: { x: number };
  constants: Record<string, number>;
}
type A = Float32Array;

/**
 * floor(x / n) for integers 0 <= x < 2^31, 0 < n, exact whenever the quotient is below 2^24 (the result
 * is an f32). The float estimate is corrected twice with integer remainders: once for the rounding of
 * x to f32 and of the division, once by +-1.
 */
export function divFloor(x: number, n: number): number {
  const q0 = Math.floor(x / n);
  const r0 = x - (q0 | 0) * n;
  const q1 = q0 + Math.floor(r0 / n);
  const r1 = x - (q1 | 0) * n;
  if (r1 < 0) return q1 - 1;
  if (r1 >= n) return q1 + 1;
  return q1;
}

export const HELPERS = [divFloor];

// ---------------------------------------------------------------------------------------------------
// buffers

export const fill = function (this: KernelThis, hp: A): number {
  return hp[0];
};

export const copy = function (this: KernelThis, x: A): number {
  return x[this.thread.x];
};

// ---------------------------------------------------------------------------------------------------
// linear algebra

/**
 * C = A @ B with A [m, k] (or [k, m] with the strides sai = 1, sap = m) and B [k, n]: neighbouring
 * threads (neighbouring j) read neighbouring B entries and the same A entry, the coalesced layout on
 * GPUs.
 */
export const matmulAB = function (this: KernelThis, a: A, b: A): number {
  const i = divFloor(this.thread.x, this.constants.n);
  const j = this.thread.x - (i | 0) * this.constants.n;
  let acc = 0;
  for (let p = 0; p < this.constants.k; p++) {
    acc += a[(i | 0) * this.constants.sai + p * this.constants.sap] * b[p * this.constants.n + (j | 0)];
  }
  return acc;
};

/** Output [cols, rows]: the transpose of x [rows, cols]. */
export const transpose = function (this: KernelThis, x: A): number {
  const c = divFloor(this.thread.x, this.constants.rows);
  const r = this.thread.x - (c | 0) * this.constants.rows;
  return x[(r | 0) * this.constants.cols + (c | 0)];
};

export const add = function (this: KernelThis, a: A, b: A): number {
  return a[this.thread.x] + b[this.thread.x];
};

export const addBias = function (this: KernelThis, x: A, bias: A): number {
  const r = divFloor(this.thread.x, this.constants.cols);
  return x[this.thread.x] + bias[this.thread.x - (r | 0) * this.constants.cols];
};

/** Output [cols]: column sums over rows. */
export const sumRows = function (this: KernelThis, x: A): number {
  let acc = 0;
  for (let r = 0; r < this.constants.rows; r++) acc += x[r * this.constants.cols + this.thread.x];
  return acc;
};

// ---------------------------------------------------------------------------------------------------
// row gathers / scatters

/** out[i, :] = x[index[i], :] (embedding lookup and gatherRows). */
export const gatherRows = function (this: KernelThis, x: A, index: A): number {
  const r = divFloor(this.thread.x, this.constants.dim);
  const c = this.thread.x - (r | 0) * this.constants.dim;
  return x[(index[r] | 0) * this.constants.dim + (c | 0)];
};

/**
 * Output [vocab * dim]. Row v of the table gradient sums dOut over the rows listed in
 * rowList[offsets[v] .. offsets[v+1]) (a CSR index built on the host), so each cell loops only over
 * its own rows.
 */
export const embeddingBackward = function (this: KernelThis, dOut: A, offsets: A, rowList: A): number {
  const v = divFloor(this.thread.x, this.constants.dim);
  const c = this.thread.x - (v | 0) * this.constants.dim;
  const start = offsets[v];
  const count = offsets[v + 1] - start;
  let acc = 0;
  for (let q = 0; q < count; q++) {
    acc += dOut[(rowList[(start | 0) + q] | 0) * this.constants.dim + (c | 0)];
  }
  return acc;
};

/** Output = dst with row r replaced by src[inverse[r], :] where inverse[r] >= 0. */
export const scatterRows = function (this: KernelThis, dst: A, src: A, inverse: A): number {
  const r = divFloor(this.thread.x, this.constants.dim);
  const s = inverse[r];
  if (s < 0) return dst[this.thread.x];
  return src[(s | 0) * this.constants.dim + (this.thread.x - (r | 0) * this.constants.dim)];
};

// ---------------------------------------------------------------------------------------------------
// rmsnorm

/** Output [rows]: rsqrt(mean(x^2) + eps), hp = [eps]. */
export const rmsnormRstd = function (this: KernelThis, x: A, hp: A): number {
  let ss = 0;
  for (let c = 0; c < this.constants.dim; c++) {
    const v = x[this.thread.x * this.constants.dim + c];
    ss += v * v;
  }
  return 1 / Math.sqrt(ss / this.constants.dim + hp[0]);
};

export const rmsnormApply = function (this: KernelThis, x: A, w: A, rstd: A): number {
  const r = divFloor(this.thread.x, this.constants.dim);
  return x[this.thread.x] * rstd[r] * w[this.thread.x - (r | 0) * this.constants.dim];
};

/** Output [rows]: sum_c dy * w * x. */
export const rmsnormDot = function (this: KernelThis, dy: A, x: A, w: A): number {
  let acc = 0;
  for (let c = 0; c < this.constants.dim; c++) {
    acc += dy[this.thread.x * this.constants.dim + c] * w[c] * x[this.thread.x * this.constants.dim + c];
  }
  return acc;
};

export const rmsnormDx = function (this: KernelThis, dy: A, x: A, w: A, rstd: A, dot: A): number {
  const r = divFloor(this.thread.x, this.constants.dim);
  const c = this.thread.x - (r | 0) * this.constants.dim;
  const rs = rstd[r];
  const coef = (rs * rs * dot[r]) / this.constants.dim;
  return rs * (dy[this.thread.x] * w[c] - x[this.thread.x] * coef);
};

/** Output [dim]: sum over rows of dy * x * rstd. */
export const rmsnormDw = function (this: KernelThis, dy: A, x: A, rstd: A): number {
  let acc = 0;
  for (let r = 0; r < this.constants.rows; r++) {
    acc += dy[r * this.constants.dim + this.thread.x] * x[r * this.constants.dim + this.thread.x] * rstd[r];
  }
  return acc;
};

// ---------------------------------------------------------------------------------------------------
// rope

/**
 * x[rows, heads, hd]; cosT/sinT[pos * half + i] are host-computed tables (float64 cos/sin rounded to
 * f32: device sin/cos of large angles is too inaccurate); hp = [sign] (-1 for the inverse rotation).
 */
export const rope = function (this: KernelThis, x: A, pos: A, cosT: A, sinT: A, hp: A): number {
  const r = divFloor(this.thread.x, this.constants.rowLen);
  const rh = divFloor(this.thread.x, this.constants.hd);
  const i = this.thread.x - (rh | 0) * this.constants.hd;
  const p = pos[r];
  if (i < this.constants.half) {
    const c1 = cosT[(p | 0) * this.constants.half + (i | 0)];
    const s1 = sinT[(p | 0) * this.constants.half + (i | 0)] * hp[0];
    return x[this.thread.x] * c1 - x[this.thread.x + this.constants.half] * s1;
  }
  const c2 = cosT[(p | 0) * this.constants.half + (i | 0) - this.constants.half];
  const s2 = sinT[(p | 0) * this.constants.half + (i | 0) - this.constants.half] * hp[0];
  return x[this.thread.x] * c2 + x[this.thread.x - this.constants.half] * s2;
};

// ---------------------------------------------------------------------------------------------------
// attention. q/dOut/out [B, tq, H, hd], k/v [B, tk, KV, hd], probs-shaped [B, H, tq, tk],
// row stats [B, H, tq]. kValid[B*tk] and qOff[B] are host masks; G = H / KV.

/** Scaled scores q.k for visible slots, 0 elsewhere; hp = [1/sqrt(hd)]. */
export const attnScores = function (this: KernelThis, q: A, k: A, kValid: A, qOff: A, hp: A): number {
  const row = divFloor(this.thread.x, this.constants.tk);
  const j = this.thread.x - (row | 0) * this.constants.tk;
  const bh = divFloor(row | 0, this.constants.tq);
  const i = row - bh * this.constants.tq;
  const b = divFloor(bh | 0, this.constants.H);
  const h = bh - b * this.constants.H;
  const kh = divFloor(h | 0, this.constants.G);
  if (kValid[(b | 0) * this.constants.tk + (j | 0)] < 0.5) return 0;
  if (j > i + qOff[b]) return 0;
  let dot = 0;
  for (let d = 0; d < this.constants.hd; d++) {
    dot +=
      q[(((b | 0) * this.constants.tq + (i | 0)) * this.constants.H + (h | 0)) * this.constants.hd + d] *
      k[(((b | 0) * this.constants.tk + (j | 0)) * this.constants.KV + (kh | 0)) * this.constants.hd + d];
  }
  return dot * hp[0];
};

/** Output [B*H*tq]: logsumexp of the row's visible scores (0 for a row that sees no key). */
export const attnLse = function (this: KernelThis, scores: A, kValid: A, qOff: A): number {
  const bh = divFloor(this.thread.x, this.constants.tq);
  const i = this.thread.x - (bh | 0) * this.constants.tq;
  const b = divFloor(bh | 0, this.constants.H);
  const last = i + qOff[b];
  let mx = -3.0e38;
  for (let j = 0; j < this.constants.tk; j++) {
    if (kValid[(b | 0) * this.constants.tk + j] > 0.5 && j <= last) {
      const s = scores[this.thread.x * this.constants.tk + j];
      if (s > mx) mx = s;
    }
  }
  let sum = 0;
  for (let j = 0; j < this.constants.tk; j++) {
    if (kValid[(b | 0) * this.constants.tk + j] > 0.5 && j <= last) {
      sum += Math.exp(scores[this.thread.x * this.constants.tk + j] - mx);
    }
  }
  if (sum <= 0) return 0;
  return mx + Math.log(sum);
};

export const attnProbs = function (this: KernelThis, scores: A, lse: A, kValid: A, qOff: A): number {
  const row = divFloor(this.thread.x, this.constants.tk);
  const j = this.thread.x - (row | 0) * this.constants.tk;
  const bh = divFloor(row | 0, this.constants.tq);
  const i = row - bh * this.constants.tq;
  const b = divFloor(bh | 0, this.constants.H);
  if (kValid[(b | 0) * this.constants.tk + (j | 0)] < 0.5) return 0;
  if (j > i + qOff[b]) return 0;
  return Math.exp(scores[this.thread.x] - lse[row]);
};

/** Output [B, tq, H, hd]: sum_j probs[b, h, i, j] * v[b, j, kh, :]. */
export const attnOut = function (this: KernelThis, probs: A, v: A): number {
  const rh = divFloor(this.thread.x, this.constants.hd);
  const d = this.thread.x - (rh | 0) * this.constants.hd;
  const bi = divFloor(rh | 0, this.constants.H);
  const h = rh - bi * this.constants.H;
  const b = divFloor(bi | 0, this.constants.tq);
  const i = bi - b * this.constants.tq;
  const kh = divFloor(h | 0, this.constants.G);
  let acc = 0;
  for (let j = 0; j < this.constants.tk; j++) {
    acc +=
      probs[(((b | 0) * this.constants.H + (h | 0)) * this.constants.tq + (i | 0)) * this.constants.tk + j] *
      v[(((b | 0) * this.constants.tk + j) * this.constants.KV + (kh | 0)) * this.constants.hd + (d | 0)];
  }
  return acc;
};

/** Probs-shaped dP[b, h, i, j] = dOut[b, i, h, :] . v[b, j, kh, :]. */
export const attnDp = function (this: KernelThis, dOut: A, v: A): number {
  const row = divFloor(this.thread.x, this.constants.tk);
  const j = this.thread.x - (row | 0) * this.constants.tk;
  const bh = divFloor(row | 0, this.constants.tq);
  const i = row - bh * this.constants.tq;
  const b = divFloor(bh | 0, this.constants.H);
  const h = bh - b * this.constants.H;
  const kh = divFloor(h | 0, this.constants.G);
  let dot = 0;
  for (let d = 0; d < this.constants.hd; d++) {
    dot +=
      dOut[(((b | 0) * this.constants.tq + (i | 0)) * this.constants.H + (h | 0)) * this.constants.hd + d] *
      v[(((b | 0) * this.constants.tk + (j | 0)) * this.constants.KV + (kh | 0)) * this.constants.hd + d];
  }
  return dot;
};

/** Output [B*H*tq]: sum_j P * dP over the row. */
export const attnRowDot = function (this: KernelThis, probs: A, dp: A): number {
  let acc = 0;
  for (let j = 0; j < this.constants.tk; j++) {
    acc += probs[this.thread.x * this.constants.tk + j] * dp[this.thread.x * this.constants.tk + j];
  }
  return acc;
};

/** dS = P * (dP - rowDot) * scale; hp = [scale]. */
export const attnDs = function (this: KernelThis, probs: A, dp: A, rowDot: A, hp: A): number {
  const row = divFloor(this.thread.x, this.constants.tk);
  return probs[this.thread.x] * (dp[this.thread.x] - rowDot[row]) * hp[0];
};

/** Output [B, tq, H, hd]: dq[b, i, h, :] = sum_j dS[b, h, i, j] * k[b, j, kh, :]. */
export const attnDq = function (this: KernelThis, ds: A, k: A): number {
  const rh = divFloor(this.thread.x, this.constants.hd);
  const d = this.thread.x - (rh | 0) * this.constants.hd;
  const bi = divFloor(rh | 0, this.constants.H);
  const h = rh - bi * this.constants.H;
  const b = divFloor(bi | 0, this.constants.tq);
  const i = bi - b * this.constants.tq;
  const kh = divFloor(h | 0, this.constants.G);
  let acc = 0;
  for (let j = 0; j < this.constants.tk; j++) {
    acc +=
      ds[(((b | 0) * this.constants.H + (h | 0)) * this.constants.tq + (i | 0)) * this.constants.tk + j] *
      k[(((b | 0) * this.constants.tk + j) * this.constants.KV + (kh | 0)) * this.constants.hd + (d | 0)];
  }
  return acc;
};

/**
 * Output [B, tk, KV, hd]: sum over the group's query heads h and query rows i of
 * w[b, h, i, j] * x[b, i, h, :]. With (w, x) = (dS, q) this is dk; with (probs, dOut) it is dv.
 */
export const attnKvGrad = function (this: KernelThis, w: A, x: A): number {
  const rk = divFloor(this.thread.x, this.constants.hd);
  const d = this.thread.x - (rk | 0) * this.constants.hd;
  const bj = divFloor(rk | 0, this.constants.KV);
  const kh = rk - bj * this.constants.KV;
  const b = divFloor(bj | 0, this.constants.tk);
  const j = bj - b * this.constants.tk;
  let acc = 0;
  for (let g = 0; g < this.constants.G; g++) {
    for (let i = 0; i < this.constants.tq; i++) {
      acc +=
        w[
          (((b | 0) * this.constants.H + (kh | 0) * this.constants.G + g) * this.constants.tq + i) *
            this.constants.tk +
            (j | 0)
        ] *
        x[
          (((b | 0) * this.constants.tq + i) * this.constants.H + (kh | 0) * this.constants.G + g) *
            this.constants.hd +
            (d | 0)
        ];
    }
  }
  return acc;
};

// ---------------------------------------------------------------------------------------------------
// elementwise

export const swiglu = function (this: KernelThis, gate: A, up: A): number {
  const g = gate[this.thread.x];
  return (g / (1 + Math.exp(-g))) * up[this.thread.x];
};

export const swigluDGate = function (this: KernelThis, dh: A, gate: A, up: A): number {
  const g = gate[this.thread.x];
  const sig = 1 / (1 + Math.exp(-g));
  return dh[this.thread.x] * up[this.thread.x] * sig * (1 + g * (1 - sig));
};

export const swigluDUp = function (this: KernelThis, dh: A, gate: A): number {
  const g = gate[this.thread.x];
  const sig = 1 / (1 + Math.exp(-g));
  return dh[this.thread.x] * g * sig;
};

// ---------------------------------------------------------------------------------------------------
// loss

/*
 * The row logsumexp is split over chunks of `chunk` logits so that the work spreads over
 * rows * chunks threads (a vocabulary of 10^5 would otherwise be one long loop per row): per-chunk
 * max, per-chunk sum of exp(l - chunk max), then a per-row combine.
 */

/** Output [rows * nch]: the max of logits / T over each chunk of a row (0 for ignored rows). */
export const ceChunkMax = function (this: KernelThis, logits: A, targets: A, invT: A): number {
  const r = divFloor(this.thread.x, this.constants.nch);
  const ch = this.thread.x - (r | 0) * this.constants.nch;
  if (targets[r] < 0) return 0;
  let mx = -3.0e38;
  for (let q = 0; q < this.constants.chunk; q++) {
    if ((ch | 0) * this.constants.chunk + q < this.constants.vocab) {
      const l = logits[(r | 0) * this.constants.vocab + (ch | 0) * this.constants.chunk + q] * invT[0];
      if (l > mx) mx = l;
    }
  }
  return mx;
};

/** Output [rows * nch]: sum over the chunk of exp(logit / T - chunk max). */
export const ceChunkSum = function (this: KernelThis, logits: A, targets: A, invT: A, chunkMax: A): number {
  const r = divFloor(this.thread.x, this.constants.nch);
  const ch = this.thread.x - (r | 0) * this.constants.nch;
  if (targets[r] < 0) return 0;
  const mx = chunkMax[this.thread.x];
  let sum = 0;
  for (let q = 0; q < this.constants.chunk; q++) {
    if ((ch | 0) * this.constants.chunk + q < this.constants.vocab) {
      sum += Math.exp(
        logits[(r | 0) * this.constants.vocab + (ch | 0) * this.constants.chunk + q] * invT[0] - mx,
      );
    }
  }
  return sum;
};

/** Output [rows]: logsumexp(logits[r, :] / T) - logits[r, target] / T (0 for a negative target). */
export const ceNll = function (
  this: KernelThis,
  logits: A,
  targets: A,
  invT: A,
  chunkMax: A,
  chunkSum: A,
): number {
  const t = targets[this.thread.x];
  if (t < 0) return 0;
  let mx = -3.0e38;
  for (let ch = 0; ch < this.constants.nch; ch++) {
    const m = chunkMax[this.thread.x * this.constants.nch + ch];
    if (m > mx) mx = m;
  }
  let sum = 0;
  for (let ch = 0; ch < this.constants.nch; ch++) {
    sum +=
      chunkSum[this.thread.x * this.constants.nch + ch] *
      Math.exp(chunkMax[this.thread.x * this.constants.nch + ch] - mx);
  }
  return mx + Math.log(sum) - logits[this.thread.x * this.constants.vocab + (t | 0)] * invT[0];
};

/**
 * dlogits = w[r] * (softmax(logits / T) - onehot), with w already divided by T on the host (the
 * gradient with respect to the unscaled logits); the row's logsumexp is nll + logit[target] / T.
 */
export const ceGrad = function (
  this: KernelThis,
  logits: A,
  targets: A,
  invT: A,
  weights: A,
  nll: A,
): number {
  const r = divFloor(this.thread.x, this.constants.vocab);
  const c = this.thread.x - (r | 0) * this.constants.vocab;
  const t = targets[r];
  if (t < 0) return 0;
  const lse = nll[r] + logits[(r | 0) * this.constants.vocab + (t | 0)] * invT[0];
  const p = weights[r] * Math.exp(logits[this.thread.x] * invT[0] - lse);
  if (c === t) return p - weights[r];
  return p;
};

// ---------------------------------------------------------------------------------------------------
// optimiser

/** Output [ceil(n / chunk)]: partial sums of squares; the host adds them in float64. */
export const sumSquaresPartial = function (this: KernelThis, x: A): number {
  let acc = 0;
  for (let q = 0; q < this.constants.chunk; q++) {
    if (this.thread.x * this.constants.chunk + q < this.constants.n) {
      const v = x[this.thread.x * this.constants.chunk + q];
      acc += v * v;
    }
  }
  return acc;
};

/** hp = [beta1, 1-beta1, beta2, 1-beta2, gradScale, 1-lr*wd, lr, bc1, bc2, eps]. */
export const adamwM = function (this: KernelThis, g: A, m: A, hp: A): number {
  return hp[0] * m[this.thread.x] + hp[1] * (g[this.thread.x] * hp[4]);
};

export const adamwV = function (this: KernelThis, g: A, v: A, hp: A): number {
  const grad = g[this.thread.x] * hp[4];
  return hp[2] * v[this.thread.x] + hp[3] * grad * grad;
};

export const adamwP = function (this: KernelThis, p: A, m: A, v: A, hp: A): number {
  return (
    p[this.thread.x] * hp[5] -
    (hp[6] * (m[this.thread.x] / hp[7])) / (Math.sqrt(v[this.thread.x] / hp[8]) + hp[9])
  );
};
