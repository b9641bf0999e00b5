/**
 * `Backend` on the CPU: the WebAssembly SIMD matmul (matmul.ts, asm/matmul.ts) and ops (ops.ts,
 * asm/ops.ts) on every core through their worker pool (pool.ts), each in its grow-once arena
 * (arena.ts); the row copies (embedding, gatherRows, scatterRows) on typed arrays (rows.ts); the bias
 * ops in plain JavaScript. A `Buf` is a Float32Array; `free` only counts (the garbage collector owns
 * the memory), and results never alias the inputs or the wasm memories. Bufs never change after they
 * are made, except through `adamwInPlace` (p, m, v) and `writeRows` (the KV cache), which update or
 * drop the resident copies first: that is what lets the matmul and attention keep operands they see
 * again in wasm memory (resident.ts) until they are freed.
 *
 * The config names `webasm` and `cpu` both select this backend (`cpu` is kept for existing configs);
 * `name` is the one asked for.
 */
import { adamwHyperVector } from '../adamw-hyper.js';
import type { AdamWHyper, AttentionShape, Backend, Buf, MatmulShape, RopeFrequencies } from '../backend.js';
import { checkRopeFrequencies } from '../reference.js';
import { RopeTableCache, ropeRowsFor } from '../rope-tables.js';
import { WasmMatmul } from './matmul.js';
import { WasmOps } from './ops.js';
import { embeddingBackwardF32, gatherRowsF32, scatterRowsF32, writeRowsF32 } from './rows.js';

export type WasmBackendName = 'webasm' | 'cpu';

export class WasmBackend implements Backend {
  readonly precision = 'f32' as const;
  private disposed = false;
  /** Bufs made and not yet freed (see liveBuffers); freed ones are remembered so a second free is a no-op. */
  private live = 0;
  private readonly freed = new WeakSet<Float32Array>();
  private readonly ropeCache = new RopeTableCache<Float32Array>(
    (host) => host,
    () => {},
  );

  private constructor(
    readonly name: WasmBackendName,
    private readonly mm: WasmMatmul,
    private readonly wasmOps: WasmOps,
  ) {}

  /** Why the backend cannot be built here ('' when it can): a missing build, no SharedArrayBuffer. */
  static unavailableReason(): string {
    return WasmMatmul.unavailableReason() || WasmOps.unavailableReason();
  }

  static async create(name: WasmBackendName = 'webasm'): Promise<WasmBackend> {
    const mm = WasmMatmul.get();
    const ops = WasmOps.get();
    if (!mm || !ops) throw new Error(`${name} unavailable: ${WasmBackend.unavailableReason()}`);
    return new WasmBackend(name, mm, ops);
  }

  /** Bufs made by this backend and not yet freed (see Backend.liveBuffers). */
  liveBuffers(): number {
    return this.live;
  }

  /** The wasm ops, after the disposed check. */
  private ops(): WasmOps {
    if (this.disposed) throw new Error(`${this.name} backend used after dispose()`);
    return this.wasmOps;
  }

  private f32(x: Buf): Float32Array {
    const b = x as unknown;
    if (!(b instanceof Float32Array)) throw new TypeError(`not a ${this.name} buffer`);
    return b;
  }

  private wrap(x: Float32Array): Buf {
    this.live++;
    return x as unknown as Buf;
  }

  // -------------------------------------------------------------------------------------------------
  // buffers

  upload(data: ArrayLike<number>): Buf {
    return this.wrap(Float32Array.from(data));
  }

  zeros(n: number): Buf {
    return this.wrap(new Float32Array(n));
  }

  async read(x: Buf): Promise<Float32Array> {
    return this.f32(x).slice();
  }

  length(x: Buf): number {
    return this.f32(x).length;
  }

  free(x: Buf): void {
    const b = x as unknown;
    if (!(b instanceof Float32Array) || this.freed.has(b)) return;
    this.freed.add(b);
    this.live--;
    this.mm.release(b);
    this.wasmOps.release(b);
  }

  async dispose(): Promise<void> {
    // the matmul and ops instances are process-wide (WasmMatmul.shutdown / WasmOps.shutdown stop them)
    this.disposed = true;
    this.ropeCache.clear();
  }

  // -------------------------------------------------------------------------------------------------
  // ops

  async matmul(a: Buf, b: Buf, s: MatmulShape): Promise<Buf> {
    this.ops();
    const c = this.mm.matmul(this.f32(a), this.f32(b), s, { resident: true });
    if (!c) {
      throw new RangeError(
        `matmul: m=${s.m} k=${s.k} n=${s.n} needs more than the 4 GiB a wasm memory holds`,
      );
    }
    return this.wrap(c);
  }

  async add(a: Buf, b: Buf): Promise<Buf> {
    return this.wrap(this.ops().add(this.f32(a), this.f32(b)));
  }

  /** x[r, c] + bias[c], one f32 add per cell. */
  async addBias(x: Buf, bias: Buf, rows: number, cols: number): Promise<Buf> {
    this.ops();
    const X = this.f32(x);
    const B = this.f32(bias);
    const out = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      for (let c = 0; c < cols; c++) out[o + c] = X[o + c] + B[c];
    }
    return this.wrap(out);
  }

  /** Column sums accumulated in f32 in row order. */
  async sumRows(x: Buf, rows: number, cols: number): Promise<Buf> {
    this.ops();
    const X = this.f32(x);
    const out = new Float32Array(cols);
    for (let c = 0; c < cols; c++) {
      let acc = 0;
      for (let r = 0; r < rows; r++) acc = Math.fround(acc + X[r * cols + c]);
      out[c] = acc;
    }
    return this.wrap(out);
  }

  async embedding(table: Buf, ids: Int32Array, dim: number): Promise<Buf> {
    this.ops();
    return this.wrap(gatherRowsF32(this.f32(table), ids, dim, 'embedding'));
  }

  async embeddingBackward(dOut: Buf, ids: Int32Array, vocab: number, dim: number): Promise<Buf> {
    this.ops();
    return this.wrap(embeddingBackwardF32(this.f32(dOut), ids, vocab, dim));
  }

  async rmsnorm(x: Buf, w: Buf, rows: number, dim: number, eps: number): Promise<{ y: Buf; rstd: Buf }> {
    const r = this.ops().rmsnorm(this.f32(x), this.f32(w), rows, dim, eps);
    return { y: this.wrap(r.y), rstd: this.wrap(r.rstd) };
  }

  async rmsnormBackward(
    dy: Buf,
    x: Buf,
    w: Buf,
    rstd: Buf,
    rows: number,
    dim: number,
  ): Promise<{ dx: Buf; dw: Buf }> {
    const ops = this.ops();
    const r = ops.rmsnormBackward(this.f32(dy), this.f32(x), this.f32(w), this.f32(rstd), rows, dim);
    return { dx: this.wrap(r.dx), dw: this.wrap(r.dw) };
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
    const rows = ropeRowsFor(positions);
    const X = this.f32(x);
    const { cos, sin } = await this.ropeCache.get(rows, headDim, freq);
    return this.wrap(this.ops().rope(X, positions, heads, headDim, cos, sin, inverse ? -1 : 1));
  }

  async attention(q: Buf, k: Buf, v: Buf, s: AttentionShape): Promise<{ out: Buf; probs: Buf }> {
    // keys and values resident: a KV cache is the same Buf every decoding step (see writeRows)
    const r = this.ops().attention(this.f32(q), this.f32(k), this.f32(v), s, true);
    return { out: this.wrap(r.out), probs: this.wrap(r.probs) };
  }

  async attentionBackward(
    dOut: Buf,
    q: Buf,
    k: Buf,
    v: Buf,
    probs: Buf,
    s: AttentionShape,
  ): Promise<{ dq: Buf; dk: Buf; dv: Buf }> {
    const [DO, Q, K, V, P] = [dOut, q, k, v, probs].map((b) => this.f32(b));
    const r = this.ops().attentionBackward(DO, Q, K, V, P, s);
    return { dq: this.wrap(r.dq), dk: this.wrap(r.dk), dv: this.wrap(r.dv) };
  }

  async swiglu(gate: Buf, up: Buf): Promise<Buf> {
    return this.wrap(this.ops().swiglu(this.f32(gate), this.f32(up)));
  }

  async swigluBackward(dh: Buf, gate: Buf, up: Buf): Promise<{ dGate: Buf; dUp: Buf }> {
    const r = this.ops().swigluBackward(this.f32(dh), this.f32(gate), this.f32(up));
    return { dGate: this.wrap(r.dGate), dUp: this.wrap(r.dUp) };
  }

  async crossEntropy(
    logits: Buf,
    targets: Int32Array,
    weights: Float64Array,
    rows: number,
    vocab: number,
    temperature = 1,
  ): Promise<{ nll: Buf; dlogits: Buf }> {
    const r = this.ops().crossEntropy(this.f32(logits), targets, weights, rows, vocab, temperature);
    return { nll: this.wrap(r.nll), dlogits: this.wrap(r.dlogits) };
  }

  async sumSquares(x: Buf): Promise<number> {
    return this.ops().sumSquares(this.f32(x));
  }

  async adamw(p: Buf, g: Buf, m: Buf, v: Buf, h: AdamWHyper): Promise<{ p: Buf; m: Buf; v: Buf }> {
    const hp = adamwHyperVector(h);
    const r = this.ops().adamw(this.f32(p), this.f32(g), this.f32(m), this.f32(v), hp);
    return { p: this.wrap(r.p), m: this.wrap(r.m), v: this.wrap(r.v) };
  }

  /** `sumSquares` of each buffer (the same numbers); with `adamwInPlace`, which the optimizer takes as a pair. */
  async sumSquaresMany(xs: Buf[]): Promise<number[]> {
    const ops = this.ops();
    return xs.map((x) => ops.sumSquares(this.f32(x)));
  }

  /** AdamW into the p, m and v buffers themselves: no result arrays, and the old ones never wait for the collector. */
  async adamwInPlace(items: { p: Buf; g: Buf; m: Buf; v: Buf; h: AdamWHyper }[]): Promise<void> {
    const ops = this.ops();
    for (const it of items) {
      const [p, g, m, v] = [it.p, it.g, it.m, it.v].map((b) => this.f32(b));
      if (g.length !== p.length || m.length !== p.length || v.length !== p.length)
        throw new RangeError(`adamwInPlace: g, m and v need ${p.length} elements each, as p`);
      // p changes: its resident matmul copy (if any) would be stale
      this.mm.release(p);
      ops.adamwInPlace(p, g, m, v, adamwHyperVector(it.h));
    }
  }

  async scatterRows(dst: Buf, src: Buf, index: Int32Array, rowDim: number): Promise<Buf> {
    this.ops();
    return this.wrap(scatterRowsF32(this.f32(dst), this.f32(src), index, rowDim));
  }

  /** scatterRows in place; the resident copies follow (the ops' is patched, the matmul's dropped). */
  async writeRows(dst: Buf, src: Buf, index: Int32Array, rowDim: number): Promise<void> {
    const ops = this.ops();
    const d = this.f32(dst);
    const x = this.f32(src);
    writeRowsF32(d, x, index, rowDim);
    ops.patchRows(d, x, index, rowDim);
    this.mm.release(d);
  }

  async gatherRows(x: Buf, index: Int32Array, rowDim: number): Promise<Buf> {
    this.ops();
    return this.wrap(gatherRowsF32(this.f32(x), index, rowDim, 'gatherRows'));
  }
}
