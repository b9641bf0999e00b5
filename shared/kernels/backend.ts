/**
 * The kernel interface every backend implements. The model is written once against it; backends are
 * the float64 reference (`reference.ts`, the ground truth for tests and finite differences), the
 * WebAssembly backend for CPUs (`wasm/`, config names `webasm` and `cpu`) and the WebGPU backend
 * (`webgpu/`). README.md in this folder lists what adding an op takes.
 *
 * Buffers are opaque: on CPU backends they are typed arrays, on webgpu they are device-resident
 * handles. Model code never indexes a buffer; it reads back only through `read`, so tensors can stay
 * on the device between kernels. All tensors are row-major and flat; shapes are passed explicitly.
 *
 * Integer inputs known on the host (token ids, positions, masks) are passed as host arrays: they come
 * from the data loader, and keeping them on the host lets CPU backends use them directly.
 */
export type Buf = { readonly __buf: unique symbol };

export type BackendName = 'reference' | 'cpu' | 'webasm' | 'webgpu';

export interface MatmulShape {
  /** C is [m, n]. */
  m: number;
  k: number;
  n: number;
  /** A is stored [k, m] and used transposed. */
  transA?: boolean;
  /** B is stored [n, k] and used transposed (x @ W^T with W in the [out, in] layout). */
  transB?: boolean;
}

/**
 * Attention over a batch of sequences. Queries are [batch, tq, heads, headDim] and keys/values
 * [batch, tk, kvHeads, headDim], flattened. Query row i of sequence b sees key slot j iff
 * `kValid[b*tk+j]` and `j <= i + qOffset[b]` (index-based causality; `qOffset` is where the queries
 * sit in the key axis: 0 in training, the cache length before the new tokens in decoding). A query
 * that sees no key gets all-zero probabilities and a zero output. Query head h uses kv head
 * h / (heads / kvHeads) (grouped-query attention).
 */
export interface AttentionShape {
  batch: number;
  tq: number;
  tk: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  kValid: Uint8Array;
  qOffset: Int32Array;
}

/**
 * The rotation a RoPE variant applies: angle(position, i) = position * invFreq[i] for the
 * headDim/2 frequency pairs, and cos/sin multiplied by `attentionScale` (YaRN's attention factor,
 * 1 elsewhere), so q and k both carry it as in transformers' rotary embedding.
 */
export interface RopeFrequencies {
  invFreq: Float64Array;
  attentionScale: number;
}

export interface AdamWHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count for bias correction. */
  step: number;
  /** Multiplies the gradient first (global-norm clipping coefficient, loss scaling). */
  gradScale: number;
}

export interface Backend {
  readonly name: BackendName;
  /** Element precision of the buffers: 'f64' only for the reference. */
  readonly precision: 'f32' | 'f64';

  upload(data: ArrayLike<number>): Buf;
  zeros(n: number): Buf;
  read(x: Buf): Promise<Float32Array | Float64Array>;
  length(x: Buf): number;
  /** Releases device memory; a freed buffer must not be used again. On CPU backends it only counts. */
  free(x: Buf): void;
  /**
   * Optional: buffers this backend has handed out (uploads and op results) and not yet freed, so
   * tests can check that a loop's buffer count stays flat. The float32 backends have it.
   */
  liveBuffers?(): number;

  matmul(a: Buf, b: Buf, s: MatmulShape): Promise<Buf>;
  add(a: Buf, b: Buf): Promise<Buf>;
  /** x[rows, cols] + bias[cols] broadcast over rows. */
  addBias(x: Buf, bias: Buf, rows: number, cols: number): Promise<Buf>;
  /** Column sums of x[rows, cols]: the gradient of a broadcast bias. */
  sumRows(x: Buf, rows: number, cols: number): Promise<Buf>;

  /** out[r, :] = table[ids[r], :]. */
  embedding(table: Buf, ids: Int32Array, dim: number): Promise<Buf>;
  /** d table[v, :] = sum over r with ids[r] = v of dOut[r, :]. */
  embeddingBackward(dOut: Buf, ids: Int32Array, vocab: number, dim: number): Promise<Buf>;

  /** y = x * rsqrt(mean(x^2) + eps) * w per row; rstd[r] is the row's rsqrt, kept for backward. */
  rmsnorm(x: Buf, w: Buf, rows: number, dim: number, eps: number): Promise<{ y: Buf; rstd: Buf }>;
  rmsnormBackward(
    dy: Buf,
    x: Buf,
    w: Buf,
    rstd: Buf,
    rows: number,
    dim: number,
  ): Promise<{ dx: Buf; dw: Buf }>;

  /**
   * Rotary embedding in the Hugging Face layout (rotate_half pairs i and i + headDim/2) on
   * x[rows, heads, headDim] with row r at position positions[r]. `inverse` rotates by -angle, which
   * (times the same scale) is the backward of the forward rotation. `freq.invFreq` has headDim/2
   * entries.
   */
  rope(
    x: Buf,
    positions: Int32Array,
    heads: number,
    headDim: number,
    freq: RopeFrequencies,
    inverse: boolean,
  ): Promise<Buf>;

  /** Returns the output [batch, tq, heads*headDim] and the probabilities [batch, heads, tq, tk]. */
  attention(q: Buf, k: Buf, v: Buf, s: AttentionShape): Promise<{ out: Buf; probs: Buf }>;
  attentionBackward(
    dOut: Buf,
    q: Buf,
    k: Buf,
    v: Buf,
    probs: Buf,
    s: AttentionShape,
  ): Promise<{ dq: Buf; dk: Buf; dv: Buf }>;

  /** h = silu(gate) * up. */
  swiglu(gate: Buf, up: Buf): Promise<Buf>;
  swigluBackward(dh: Buf, gate: Buf, up: Buf): Promise<{ dGate: Buf; dUp: Buf }>;

  /**
   * Per-row cross-entropy of the temperature-scaled logits z / T, z = logits[rows, vocab], against
   * targets (negative target = ignored row). Returns nll[r] = logsumexp(z/T) - z[target]/T (0 for
   * ignored rows) and dlogits = weights[r] * (softmax(z/T) - onehot(target)) / T, the gradient of
   * sum_r weights[r] * nll[r] with respect to the unscaled logits z (zero rows where ignored).
   * `temperature` T defaults to 1 (plain cross-entropy); it must be finite and > 0 (RangeError).
   */
  crossEntropy(
    logits: Buf,
    targets: Int32Array,
    weights: Float64Array,
    rows: number,
    vocab: number,
    temperature?: number,
  ): Promise<{ nll: Buf; dlogits: Buf }>;

  /** Sum of squares of x (global-norm clipping). */
  sumSquares(x: Buf): Promise<number>;

  /** One AdamW update with decoupled weight decay; returns the new parameter and moments. */
  adamw(p: Buf, g: Buf, m: Buf, v: Buf, h: AdamWHyper): Promise<{ p: Buf; m: Buf; v: Buf }>;

  /**
   * Optional, where a call per tensor is what costs (a GPU): `sumSquares` of every buffer in one pass
   * and one read-back, the same numbers as one call each.
   */
  sumSquaresMany?(xs: Buf[]): Promise<number[]>;
  /**
   * Optional, with `sumSquaresMany`: `adamw` on every item in one pass, in place: afterwards each p, m
   * and v Buf holds its new value (the numbers `adamw` returns); g is left as it was.
   */
  adamwInPlace?(items: { p: Buf; g: Buf; m: Buf; v: Buf; h: AdamWHyper }[]): Promise<void>;

  /** dst[rows, rowDim] with dst[index[i], :] replaced by src[i, :] (KV-cache writes). */
  scatterRows(dst: Buf, src: Buf, index: Int32Array, rowDim: number): Promise<Buf>;
  /**
   * Optional: `scatterRows` into dst itself (afterwards dst holds what scatterRows returns), for the
   * KV cache's appends, where copying the whole cache for every token is what costs. Indices are
   * checked before anything is written: a RangeError leaves dst as it was.
   */
  writeRows?(dst: Buf, src: Buf, index: Int32Array, rowDim: number): Promise<void>;
  /** out[i, :] = x[index[i], :] (picking the last position of each sequence, cache reorders). */
  gatherRows(x: Buf, index: Int32Array, rowDim: number): Promise<Buf>;

  /** Releases kernels, workers and devices. */
  dispose(): Promise<void>;
}

/** The check every backend's crossEntropy makes of its temperature: finite and > 0. */
export function checkTemperature(temperature: number): void {
  if (!(temperature > 0 && Number.isFinite(temperature)))
    throw new RangeError(`crossEntropy: temperature ${temperature} must be finite and > 0`);
}
