import {
  type AdamWHyper,
  type AttentionShape,
  type Backend,
  type Buf,
  checkTemperature,
  type MatmulShape,
  type RopeFrequencies,
} from './backend.js';

/**
 * The float64 reference: plain loops written for clarity, not speed. Every fast kernel is tested
 * against it, and the model's finite-difference gradient check runs on it.
 */
const f = (b: Buf): Float64Array => b as unknown as Float64Array;
const buf = (a: Float64Array): Buf => a as unknown as Buf;

/** Checks that `freq` fits the head size: one finite frequency per pair and a finite scale. */
export function checkRopeFrequencies(freq: RopeFrequencies, headDim: number): void {
  if (headDim % 2 !== 0) throw new RangeError(`rope: headDim ${headDim} must be even`);
  if (freq.invFreq.length !== headDim / 2) {
    throw new RangeError(`rope: ${freq.invFreq.length} frequencies for headDim ${headDim}`);
  }
  if (!freq.invFreq.every(Number.isFinite) || !Number.isFinite(freq.attentionScale)) {
    throw new RangeError('rope: non-finite frequency or attention scale');
  }
}

export class ReferenceBackend implements Backend {
  readonly name = 'reference' as const;
  readonly precision = 'f64' as const;

  upload(data: ArrayLike<number>): Buf {
    return buf(Float64Array.from(data));
  }
  zeros(n: number): Buf {
    return buf(new Float64Array(n));
  }
  async read(x: Buf): Promise<Float64Array> {
    return f(x).slice();
  }
  length(x: Buf): number {
    return f(x).length;
  }
  free(_x: Buf): void {}
  async dispose(): Promise<void> {}

  async matmul(a: Buf, b: Buf, s: MatmulShape): Promise<Buf> {
    const A = f(a);
    const B = f(b);
    const { m, k, n } = s;
    const C = new Float64Array(m * n);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let p = 0; p < k; p++) {
          const av = s.transA ? A[p * m + i] : A[i * k + p];
          const bv = s.transB ? B[j * k + p] : B[p * n + j];
          acc += av * bv;
        }
        C[i * n + j] = acc;
      }
    }
    return buf(C);
  }

  async add(a: Buf, b: Buf): Promise<Buf> {
    const A = f(a);
    const B = f(b);
    return buf(A.map((x, i) => x + B[i]));
  }

  async addBias(x: Buf, bias: Buf, rows: number, cols: number): Promise<Buf> {
    const X = f(x);
    const b = f(bias);
    const out = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] = X[r * cols + c] + b[c];
    return buf(out);
  }

  async sumRows(x: Buf, rows: number, cols: number): Promise<Buf> {
    const X = f(x);
    const out = new Float64Array(cols);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c] += X[r * cols + c];
    return buf(out);
  }

  async embedding(table: Buf, ids: Int32Array, dim: number): Promise<Buf> {
    const T = f(table);
    const out = new Float64Array(ids.length * dim);
    ids.forEach((id, r) => {
      out.set(T.subarray(id * dim, (id + 1) * dim), r * dim);
    });
    return buf(out);
  }

  async embeddingBackward(dOut: Buf, ids: Int32Array, vocab: number, dim: number): Promise<Buf> {
    const D = f(dOut);
    const out = new Float64Array(vocab * dim);
    ids.forEach((id, r) => {
      for (let c = 0; c < dim; c++) out[id * dim + c] += D[r * dim + c];
    });
    return buf(out);
  }

  async rmsnorm(x: Buf, w: Buf, rows: number, dim: number, eps: number): Promise<{ y: Buf; rstd: Buf }> {
    const X = f(x);
    const W = f(w);
    const y = new Float64Array(rows * dim);
    const rstd = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      let ss = 0;
      for (let c = 0; c < dim; c++) ss += X[r * dim + c] ** 2;
      const rs = 1 / Math.sqrt(ss / dim + eps);
      rstd[r] = rs;
      for (let c = 0; c < dim; c++) y[r * dim + c] = X[r * dim + c] * rs * W[c];
    }
    return { y: buf(y), rstd: buf(rstd) };
  }

  async rmsnormBackward(
    dy: Buf,
    x: Buf,
    w: Buf,
    rstd: Buf,
    rows: number,
    dim: number,
  ): Promise<{ dx: Buf; dw: Buf }> {
    const DY = f(dy);
    const X = f(x);
    const W = f(w);
    const RS = f(rstd);
    const dx = new Float64Array(rows * dim);
    const dw = new Float64Array(dim);
    for (let r = 0; r < rows; r++) {
      const rs = RS[r];
      // y = x * rs * w, rs = (mean(x^2)+eps)^-1/2  =>  dx = rs * (g - x * rs^2 * mean(g * x)), g = dy * w
      let dot = 0;
      for (let c = 0; c < dim; c++) dot += DY[r * dim + c] * W[c] * X[r * dim + c];
      const coef = (rs * rs * dot) / dim;
      for (let c = 0; c < dim; c++) {
        const i = r * dim + c;
        dx[i] = rs * (DY[i] * W[c] - X[i] * coef);
        dw[c] += DY[i] * X[i] * rs;
      }
    }
    return { dx: buf(dx), dw: buf(dw) };
  }

  async rope(
    x: Buf,
    positions: Int32Array,
    heads: number,
    headDim: number,
    freq: RopeFrequencies,
    inverse: boolean,
  ): Promise<Buf> {
    checkRopeFrequencies(freq, headDim);
    const X = f(x);
    const out = new Float64Array(X.length);
    const half = headDim / 2;
    const inv = freq.invFreq;
    const scale = freq.attentionScale;
    const sign = inverse ? -1 : 1;
    for (let r = 0; r < positions.length; r++) {
      for (let h = 0; h < heads; h++) {
        const base = (r * heads + h) * headDim;
        for (let i = 0; i < half; i++) {
          const ang = positions[r] * inv[i];
          const c = scale * Math.cos(ang);
          const s = sign * scale * Math.sin(ang);
          const a = X[base + i];
          const b = X[base + i + half];
          out[base + i] = a * c - b * s;
          out[base + i + half] = b * c + a * s;
        }
      }
    }
    return buf(out);
  }

  async attention(q: Buf, k: Buf, v: Buf, s: AttentionShape): Promise<{ out: Buf; probs: Buf }> {
    const Q = f(q);
    const K = f(k);
    const V = f(v);
    const { batch, tq, tk, heads, kvHeads, headDim: hd } = s;
    const group = heads / kvHeads;
    const scale = 1 / Math.sqrt(hd);
    const probs = new Float64Array(batch * heads * tq * tk);
    const out = new Float64Array(batch * tq * heads * hd);
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        const kh = Math.floor(h / group);
        for (let i = 0; i < tq; i++) {
          const row = ((b * heads + h) * tq + i) * tk;
          const qBase = ((b * tq + i) * heads + h) * hd;
          let max = Number.NEGATIVE_INFINITY;
          for (let j = 0; j < tk; j++) {
            if (!visible(s, b, i, j)) continue;
            const kBase = ((b * tk + j) * kvHeads + kh) * hd;
            let dot = 0;
            for (let d = 0; d < hd; d++) dot += Q[qBase + d] * K[kBase + d];
            probs[row + j] = dot * scale;
            if (probs[row + j] > max) max = probs[row + j];
          }
          if (max === Number.NEGATIVE_INFINITY) continue;
          let sum = 0;
          for (let j = 0; j < tk; j++) {
            if (!visible(s, b, i, j)) continue;
            probs[row + j] = Math.exp(probs[row + j] - max);
            sum += probs[row + j];
          }
          for (let j = 0; j < tk; j++) {
            if (!visible(s, b, i, j)) continue;
            probs[row + j] /= sum;
            const p = probs[row + j];
            const vBase = ((b * tk + j) * kvHeads + kh) * hd;
            for (let d = 0; d < hd; d++) out[qBase + d] += p * V[vBase + d];
          }
        }
      }
    }
    return { out: buf(out), probs: buf(probs) };
  }

  async attentionBackward(
    dOut: Buf,
    q: Buf,
    k: Buf,
    v: Buf,
    probs: Buf,
    s: AttentionShape,
  ): Promise<{ dq: Buf; dk: Buf; dv: Buf }> {
    const DO = f(dOut);
    const Q = f(q);
    const K = f(k);
    const V = f(v);
    const P = f(probs);
    const { batch, tq, tk, heads, kvHeads, headDim: hd } = s;
    const group = heads / kvHeads;
    const scale = 1 / Math.sqrt(hd);
    const dq = new Float64Array(Q.length);
    const dk = new Float64Array(K.length);
    const dv = new Float64Array(V.length);
    const dp = new Float64Array(tk);
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        const kh = Math.floor(h / group);
        for (let i = 0; i < tq; i++) {
          const row = ((b * heads + h) * tq + i) * tk;
          const qBase = ((b * tq + i) * heads + h) * hd;
          // dP = dO . v ; dS = P * (dP - sum(P * dP))
          let pdp = 0;
          for (let j = 0; j < tk; j++) {
            const vBase = ((b * tk + j) * kvHeads + kh) * hd;
            let dot = 0;
            for (let d = 0; d < hd; d++) dot += DO[qBase + d] * V[vBase + d];
            dp[j] = dot;
            pdp += P[row + j] * dot;
          }
          for (let j = 0; j < tk; j++) {
            const p = P[row + j];
            if (p === 0) continue;
            const kBase = ((b * tk + j) * kvHeads + kh) * hd;
            const ds = p * (dp[j] - pdp) * scale;
            for (let d = 0; d < hd; d++) {
              dq[qBase + d] += ds * K[kBase + d];
              dk[kBase + d] += ds * Q[qBase + d];
              dv[kBase + d] += p * DO[qBase + d];
            }
          }
        }
      }
    }
    return { dq: buf(dq), dk: buf(dk), dv: buf(dv) };
  }

  async swiglu(gate: Buf, up: Buf): Promise<Buf> {
    const G = f(gate);
    const U = f(up);
    return buf(G.map((g, i) => (g / (1 + Math.exp(-g))) * U[i]));
  }

  async swigluBackward(dh: Buf, gate: Buf, up: Buf): Promise<{ dGate: Buf; dUp: Buf }> {
    const DH = f(dh);
    const G = f(gate);
    const U = f(up);
    const dGate = new Float64Array(G.length);
    const dUp = new Float64Array(G.length);
    for (let i = 0; i < G.length; i++) {
      const sig = 1 / (1 + Math.exp(-G[i]));
      dUp[i] = DH[i] * G[i] * sig;
      dGate[i] = DH[i] * U[i] * sig * (1 + G[i] * (1 - sig));
    }
    return { dGate: buf(dGate), dUp: buf(dUp) };
  }

  async crossEntropy(
    logits: Buf,
    targets: Int32Array,
    weights: Float64Array,
    rows: number,
    vocab: number,
    temperature = 1,
  ): Promise<{ nll: Buf; dlogits: Buf }> {
    checkTemperature(temperature);
    const T = temperature;
    const L = f(logits);
    const nll = new Float64Array(rows);
    const d = new Float64Array(rows * vocab);
    for (let r = 0; r < rows; r++) {
      const t = targets[r];
      if (t < 0) continue;
      const base = r * vocab;
      let max = Number.NEGATIVE_INFINITY;
      for (let c = 0; c < vocab; c++) max = Math.max(max, L[base + c] / T);
      let sum = 0;
      for (let c = 0; c < vocab; c++) sum += Math.exp(L[base + c] / T - max);
      const lse = max + Math.log(sum);
      nll[r] = lse - L[base + t] / T;
      // d/dz of nll(z/T) is (softmax(z/T) - onehot) / T
      const w = weights[r] / T;
      for (let c = 0; c < vocab; c++) d[base + c] = w * Math.exp(L[base + c] / T - lse);
      d[base + t] -= w;
    }
    return { nll: buf(nll), dlogits: buf(d) };
  }

  async sumSquares(x: Buf): Promise<number> {
    let s = 0;
    for (const v of f(x)) s += v * v;
    return s;
  }

  async adamw(p: Buf, g: Buf, m: Buf, v: Buf, h: AdamWHyper): Promise<{ p: Buf; m: Buf; v: Buf }> {
    const P = f(p);
    const G = f(g);
    const M = f(m);
    const V = f(v);
    const np = new Float64Array(P.length);
    const nm = new Float64Array(P.length);
    const nv = new Float64Array(P.length);
    const bc1 = 1 - h.beta1 ** h.step;
    const bc2 = 1 - h.beta2 ** h.step;
    for (let i = 0; i < P.length; i++) {
      const grad = G[i] * h.gradScale;
      nm[i] = h.beta1 * M[i] + (1 - h.beta1) * grad;
      nv[i] = h.beta2 * V[i] + (1 - h.beta2) * grad * grad;
      const decayed = P[i] * (1 - h.lr * h.weightDecay);
      np[i] = decayed - (h.lr * (nm[i] / bc1)) / (Math.sqrt(nv[i] / bc2) + h.eps);
    }
    return { p: buf(np), m: buf(nm), v: buf(nv) };
  }

  async scatterRows(dst: Buf, src: Buf, index: Int32Array, rowDim: number): Promise<Buf> {
    const out = f(dst).slice();
    const S = f(src);
    index.forEach((row, i) => {
      out.set(S.subarray(i * rowDim, (i + 1) * rowDim), row * rowDim);
    });
    return buf(out);
  }

  async gatherRows(x: Buf, index: Int32Array, rowDim: number): Promise<Buf> {
    const X = f(x);
    const out = new Float64Array(index.length * rowDim);
    index.forEach((row, i) => {
      out.set(X.subarray(row * rowDim, (row + 1) * rowDim), i * rowDim);
    });
    return buf(out);
  }
}

/** The visibility rule of `AttentionShape`, shared by every backend's host-side preparation. */
export function visible(s: AttentionShape, b: number, i: number, j: number): boolean {
  return s.kValid[b * s.tk + j] !== 0 && j <= i + s.qOffset[b];
}
