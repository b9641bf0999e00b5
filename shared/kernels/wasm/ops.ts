/**
 * The WebAssembly SIMD ops of asm/ops.ts (attention forward/backward, cross-entropy, rmsnorm
 * forward/backward, rope, swiglu forward/backward, AdamW, sum of squares, add) behind plain
 * Float32Array calls with the kernel interface's semantics (shared/kernels/backend.ts), on every core
 * where the op is big enough.
 *
 * Like the matmul (matmul.ts), one process-wide instance owns a shared WebAssembly.Memory used as a
 * grow-once arena:
 *   [0, 64 KiB)        reserved (the module's own statics, if any)
 *   ARGS (256 bytes)   the parameter block of the current op (op id, sizes, byte addresses, scalars)
 *   inputs | outputs   the current call's operands, 64-byte aligned
 * A call copies its inputs in, writes the parameter block, runs `chunk(args, 0, units)` on the main
 * thread or splits the units between the main thread and the worker pool (pool.ts, job kind JOB_OP),
 * then copies the outputs out into fresh Float32Arrays. Nothing is kept between calls.
 *
 * Environment: RMT_WASM_THREADS caps the participants (as for the matmul); RMT_WASM_VARIANT picks the
 * build (loader.ts). The gpu.js backend routes to this unless RMT_WASM_KERNELS=0.
 */
import { availableParallelism } from 'node:os';
import { type AttentionShape, checkTemperature } from '../backend.js';
import {
  type LoadedModule,
  loadOpsModule,
  type OpsExports,
  SharedInstance,
  type WasmVariant,
} from './loader.js';
import { JOB_OP, JOB_PARAMS, MAX_CHUNKS, WorkerPool } from './pool.js';

const PAGE = 65536;
const MAX_PAGES = 65536;
const ARGS = PAGE;
const ARGS_WORDS = 64;
const ARENA = ARGS + ARGS_WORDS * 4;
const MAX_THREADS = 8;

// op ids and constants of asm/ops.ts
const OP_ADD = 1;
const OP_SWIGLU = 2;
const OP_SWIGLU_BWD = 3;
const OP_ADAMW = 4;
const OP_SUMSQ = 5;
const OP_RMSNORM = 6;
const OP_RMSNORM_DX = 7;
const OP_RMSNORM_DW = 8;
const OP_ROPE = 9;
const OP_ATTN = 10;
const OP_ATTN_BWD = 11;
const OP_CE = 12;
const SUMSQ_BLOCK = 4096;

/** Elements per AdamW call: 7 arrays of 2^24 floats are 448 MiB of wasm memory, far below its 4 GiB. */
export const ADAMW_CHUNK_ELEMENTS = 1 << 24;

/** Below this much work (about one unit per multiply-add or exp) an op runs on the main thread alone. */
export const OPS_PARALLEL_MIN_WORK = 1 << 18;
/** Chunks per participant when an op is split (a late or busy thread only delays its own share). */
const CHUNKS_PER_THREAD = 4;

export interface OpsRunOptions {
  /** Participants for the calls (1 = main thread only); default: by problem size. */
  threads?: number;
}

function align(x: number, to: number): number {
  return Math.ceil(x / to) * to;
}

type Input = Float32Array | Int32Array | Uint8Array;

export class WasmOps {
  readonly variant: WasmVariant;
  private readonly memory: WebAssembly.Memory;
  private readonly ex: OpsExports;
  private readonly pool: WorkerPool | null;
  private f32!: Float32Array;
  private i32!: Int32Array;
  private u8!: Uint8Array;
  private f64!: Float64Array;
  private readonly job = new Array<number>(JOB_PARAMS).fill(0);
  /** Forced participants (tests); null = by problem size. */
  forceThreads: number | null = null;

  private constructor(
    loaded: LoadedModule,
    /** Participants (main thread included). */
    readonly threads: number,
  ) {
    this.variant = loaded.variant;
    this.memory = new WebAssembly.Memory({ initial: 2, maximum: MAX_PAGES, shared: true });
    this.ex = new WebAssembly.Instance(loaded.module, { env: { memory: this.memory } })
      .exports as unknown as OpsExports;
    this.views();
    this.pool =
      threads > 1
        ? new WorkerPool(loaded.module, this.memory, threads - 1, { spin: 20000, timeoutMs: 600_000 })
        : null;
  }

  private static readonly shared = new SharedInstance(
    'wasm ops',
    loadOpsModule,
    (loaded) => new WasmOps(loaded, defaultThreads()),
  );

  /** The shared instance, or null where the module is missing or WebAssembly threads are unavailable. */
  static get(): WasmOps | null {
    return WasmOps.shared.get();
  }

  /** Why `get()` returned null ('' when it did not). */
  static unavailableReason(): string {
    return WasmOps.shared.unavailableReason();
  }

  /** Stops the shared instance's workers; the next `get()` builds a new instance. */
  static shutdown(): Promise<void> {
    return WasmOps.shared.shutdown();
  }

  /** Stops this instance's workers (through `shutdown()`). */
  async close(): Promise<void> {
    await this.pool?.close();
  }

  /** Current size of the shared memory in bytes (for leak checks). */
  get memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  // -------------------------------------------------------------------------------------------------
  // plumbing

  private views(): void {
    const b = this.memory.buffer;
    this.f32 = new Float32Array(b);
    this.i32 = new Int32Array(b);
    this.u8 = new Uint8Array(b);
    this.f64 = new Float64Array(b);
  }

  /** Places regions of the given byte sizes in the arena (growing the memory); returns their addresses. */
  private place(bytes: number[]): number[] {
    const ptrs: number[] = [];
    let at = ARENA;
    for (const n of bytes) {
      at = align(at, 64);
      ptrs.push(at);
      at += n;
    }
    const have = this.memory.buffer.byteLength;
    if (at > have) {
      const pages = Math.ceil(at / PAGE);
      if (pages > MAX_PAGES) throw new RangeError(`wasm ops: ${at} bytes exceed the 4 GiB wasm memory`);
      this.memory.grow(pages - have / PAGE);
      this.views();
    }
    return ptrs;
  }

  private put(ptr: number, x: Input, n: number): void {
    if (x.length < n) throw new RangeError(`wasm ops: input has ${x.length} elements, needs ${n}`);
    const src = x.length === n ? x : x.subarray(0, n);
    if (x instanceof Float32Array) this.f32.set(src as Float32Array, ptr >> 2);
    else if (x instanceof Int32Array) this.i32.set(src as Int32Array, ptr >> 2);
    else this.u8.set(src as Uint8Array, ptr);
  }

  /** A fresh Float32Array copy of n floats at ptr. */
  private take(ptr: number, n: number): Float32Array {
    // Uninitialised (every element is written next): skips zero-filling a fresh allocation.
    const raw = Buffer.allocUnsafeSlow(n * 4);
    const out = new Float32Array(raw.buffer, raw.byteOffset, n);
    out.set(this.f32.subarray(ptr >> 2, (ptr >> 2) + n));
    return out;
  }

  /** Writes the parameter block: integer words, then f32 words from `fAt`. */
  private args(words: number[], floats: number[] = [], fAt = words.length): void {
    const base = ARGS >> 2;
    for (let i = 0; i < words.length; i++) this.i32[base + i] = words[i];
    for (let i = 0; i < floats.length; i++) this.f32[base + fAt + i] = floats[i];
  }

  /** Runs units [0, units) of the op in the parameter block; chunks are multiples of `unitAlign`. */
  private exec(units: number, work: number, unitAlign = 1): void {
    if (units <= 0) return;
    const threads = Math.max(
      1,
      Math.min(this.forceThreads ?? (work < OPS_PARALLEL_MIN_WORK ? 1 : this.threads), this.threads),
    );
    if (threads === 1 || !this.pool || units === 1) {
      this.ex.chunk(ARGS, 0, units);
      return;
    }
    const wanted = Math.min(units, threads * CHUNKS_PER_THREAD, MAX_CHUNKS);
    const chunk = align(Math.ceil(units / wanted), unitAlign);
    const job = this.job;
    job.fill(0);
    job[0] = JOB_OP;
    job[3] = units;
    job[6] = ARGS;
    job[9] = 1;
    job[10] = units;
    job[11] = chunk;
    job[12] = Math.ceil(units / chunk);
    this.pool.run(job, this.ex as unknown as { chunk: (...a: number[]) => void });
  }

  // -------------------------------------------------------------------------------------------------
  // elementwise

  add(a: Float32Array, b: Float32Array): Float32Array {
    const n = a.length;
    const [pa, pb, po] = this.place([n * 4, n * 4, n * 4]);
    this.put(pa, a, n);
    this.put(pb, b, n);
    this.args([OP_ADD, n, pa, pb, po]);
    this.exec(n, n, 64);
    return this.take(po, n);
  }

  swiglu(gate: Float32Array, up: Float32Array): Float32Array {
    const n = gate.length;
    const [pg, pu, po] = this.place([n * 4, n * 4, n * 4]);
    this.put(pg, gate, n);
    this.put(pu, up, n);
    this.args([OP_SWIGLU, n, pg, pu, po]);
    this.exec(n, 8 * n, 64);
    return this.take(po, n);
  }

  swigluBackward(
    dh: Float32Array,
    gate: Float32Array,
    up: Float32Array,
  ): { dGate: Float32Array; dUp: Float32Array } {
    const n = gate.length;
    const [pd, pg, pu, pdg, pdu] = this.place([n * 4, n * 4, n * 4, n * 4, n * 4]);
    this.put(pd, dh, n);
    this.put(pg, gate, n);
    this.put(pu, up, n);
    this.args([OP_SWIGLU_BWD, n, pd, pg, pu, pdg, pdu]);
    this.exec(n, 10 * n, 64);
    return { dGate: this.take(pdg, n), dUp: this.take(pdu, n) };
  }

  /**
   * One AdamW step; `hp` = [beta1, 1-beta1, beta2, 1-beta2, gradScale, 1-lr*wd, lr, bc1, bc2, eps]
   * (rounded to f32, as the gpu.js kernels take them).
   */
  adamw(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    hp: ArrayLike<number>,
    chunk = ADAMW_CHUNK_ELEMENTS,
  ): { p: Float32Array; m: Float32Array; v: Float32Array } {
    const n = p.length;
    if (n > chunk) {
      // Seven arrays of a large tensor (Qwen3's 151936 x 1024 embedding) pass the 4 GiB a wasm
      // memory holds; AdamW is per element, so slices give the same numbers (slices start at
      // multiples of 4, so every element meets the same SIMD or tail code as whole).
      const out = { p: new Float32Array(n), m: new Float32Array(n), v: new Float32Array(n) };
      const step = chunk - (chunk % 4) || 4;
      for (let s = 0; s < n; s += step) {
        const e = Math.min(n, s + step);
        const r = this.adamw(
          p.subarray(s, e),
          g.subarray(s, e),
          m.subarray(s, e),
          v.subarray(s, e),
          hp,
          step,
        );
        out.p.set(r.p, s);
        out.m.set(r.m, s);
        out.v.set(r.v, s);
      }
      return out;
    }
    const [pp, pg, pm, pv, np, nm, nv] = this.place(new Array(7).fill(n * 4));
    this.put(pp, p, n);
    this.put(pg, g, n);
    this.put(pm, m, n);
    this.put(pv, v, n);
    this.args([OP_ADAMW, n, pp, pg, pm, pv, np, nm, nv, 0], Array.from(hp), 10);
    this.exec(n, 8 * n, 64);
    return { p: this.take(np, n), m: this.take(nm, n), v: this.take(nv, n) };
  }

  /** Sum of squares: f32 SIMD partials over blocks of 4096 elements, added in float64. */
  sumSquares(x: Float32Array): number {
    const n = x.length;
    if (n === 0) return 0;
    const blocks = Math.ceil(n / SUMSQ_BLOCK);
    const [px, pp] = this.place([n * 4, blocks * 8]);
    this.put(px, x, n);
    this.args([OP_SUMSQ, n, px, pp]);
    this.exec(blocks, n);
    let s = 0;
    for (let i = 0; i < blocks; i++) s += this.f64[(pp >> 3) + i];
    return s;
  }

  // -------------------------------------------------------------------------------------------------
  // rmsnorm, rope

  rmsnorm(
    x: Float32Array,
    w: Float32Array,
    rows: number,
    dim: number,
    eps: number,
  ): { y: Float32Array; rstd: Float32Array } {
    const n = rows * dim;
    const [px, pw, py, pr] = this.place([n * 4, dim * 4, n * 4, rows * 4]);
    this.put(px, x, n);
    this.put(pw, w, dim);
    this.args([OP_RMSNORM, rows, dim, px, pw, py, pr], [eps], 7);
    this.exec(rows, 3 * n);
    return { y: this.take(py, n), rstd: this.take(pr, rows) };
  }

  rmsnormBackward(
    dy: Float32Array,
    x: Float32Array,
    w: Float32Array,
    rstd: Float32Array,
    rows: number,
    dim: number,
  ): { dx: Float32Array; dw: Float32Array } {
    const n = rows * dim;
    const [pdy, px, pw, pr, pdx, pdw] = this.place([n * 4, n * 4, dim * 4, rows * 4, n * 4, dim * 4]);
    this.put(pdy, dy, n);
    this.put(px, x, n);
    this.put(pw, w, dim);
    this.put(pr, rstd, rows);
    this.args([OP_RMSNORM_DX, rows, dim, pdy, px, pw, pr, pdx]);
    this.exec(rows, 5 * n);
    this.args([OP_RMSNORM_DW, rows, dim, pdy, px, pr, pdw]);
    this.exec(dim, 2 * n, 4);
    return { dx: this.take(pdx, n), dw: this.take(pdw, dim) };
  }

  /**
   * Rotary embedding of x[rows, heads, headDim] with row r at positions[r]; `cos`/`sin` are the
   * [position, headDim/2] tables (host float64 rounded to f32) covering every position; sign -1
   * rotates backwards.
   */
  rope(
    x: Float32Array,
    positions: Int32Array,
    heads: number,
    headDim: number,
    cos: Float32Array,
    sin: Float32Array,
    sign: number,
  ): Float32Array {
    const rows = positions.length;
    const n = rows * heads * headDim;
    let maxPos = 0;
    for (let r = 0; r < rows; r++) maxPos = Math.max(maxPos, positions[r]);
    const tab = Math.min(cos.length, (maxPos + 1) * (headDim / 2));
    const [px, pp, pc, ps, po] = this.place([n * 4, rows * 4, tab * 4, tab * 4, n * 4]);
    this.put(px, x, n);
    this.put(pp, positions, rows);
    this.put(pc, cos, tab);
    this.put(ps, sin, tab);
    this.args([OP_ROPE, rows, heads, headDim, px, pp, pc, ps, po], [sign], 9);
    this.exec(rows, 3 * n);
    return this.take(po, n);
  }

  // -------------------------------------------------------------------------------------------------
  // attention, cross-entropy

  private attnCheck(s: AttentionShape): void {
    if (s.heads % s.kvHeads !== 0) throw new RangeError('attention: heads must be a multiple of kvHeads');
  }

  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    s: AttentionShape,
  ): { out: Float32Array; probs: Float32Array } {
    this.attnCheck(s);
    const { batch: B, tq, tk, heads: H, kvHeads: KV, headDim: hd } = s;
    const nq = B * tq * H * hd;
    const nk = B * tk * KV * hd;
    const nP = B * H * tq * tk;
    const [pq, pk, pv, pm, po, pout, pprobs] = this.place([
      nq * 4,
      nk * 4,
      nk * 4,
      B * tk,
      B * 4,
      nq * 4,
      nP * 4,
    ]);
    this.put(pq, q, nq);
    this.put(pk, k, nk);
    this.put(pv, v, nk);
    this.put(pm, s.kValid, B * tk);
    this.put(po, s.qOffset, B);
    this.args([OP_ATTN, B, tq, tk, H, KV, hd, pq, pk, pv, pm, po, pout, pprobs], [1 / Math.sqrt(hd)], 14);
    this.exec(B * H * tq, 2 * nP * hd + 8 * nP);
    return { out: this.take(pout, nq), probs: this.take(pprobs, nP) };
  }

  attentionBackward(
    dOut: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    probs: Float32Array,
    s: AttentionShape,
  ): { dq: Float32Array; dk: Float32Array; dv: Float32Array } {
    this.attnCheck(s);
    const { batch: B, tq, tk, heads: H, kvHeads: KV, headDim: hd } = s;
    const nq = B * tq * H * hd;
    const nk = B * tk * KV * hd;
    const nP = B * H * tq * tk;
    const [pdo, pq, pk, pv, pp, pm, po, pdq, pdk, pdv, pw] = this.place([
      nq * 4,
      nq * 4,
      nk * 4,
      nk * 4,
      nP * 4,
      B * tk,
      B * 4,
      nq * 4,
      nk * 4,
      nk * 4,
      B * KV * tk * 4,
    ]);
    this.put(pdo, dOut, nq);
    this.put(pq, q, nq);
    this.put(pk, k, nk);
    this.put(pv, v, nk);
    this.put(pp, probs, nP);
    this.put(pm, s.kValid, B * tk);
    this.put(po, s.qOffset, B);
    this.args(
      [OP_ATTN_BWD, B, tq, tk, H, KV, hd, pdo, pq, pk, pv, pp, pm, po, pdq, pdk, pdv, 0, pw],
      [1 / Math.sqrt(hd)],
      17,
    );
    this.exec(B * KV, 4 * nP * hd);
    return { dq: this.take(pdq, nq), dk: this.take(pdk, nk), dv: this.take(pdv, nk) };
  }

  /**
   * Per-row cross-entropy at `temperature` (weights rounded to f32); see Backend.crossEntropy. The
   * wasm kernel computes plain cross-entropy; a temperature T is applied on the way in: the logits are
   * scaled to z / T once copied to wasm memory and the weights written as w / T, so the kernel's
   * w/T * (softmax(z/T) - onehot) is the gradient with respect to z.
   */
  crossEntropy(
    logits: Float32Array,
    targets: Int32Array,
    weights: ArrayLike<number>,
    rows: number,
    vocab: number,
    temperature = 1,
  ): { nll: Float32Array; dlogits: Float32Array } {
    checkTemperature(temperature);
    const n = rows * vocab;
    for (let r = 0; r < rows; r++) {
      const t = targets[r];
      if (t >= vocab) throw new RangeError(`crossEntropy: target ${t} at row ${r} outside [0, ${vocab})`);
    }
    const [pl, pt, pw, pn, pd] = this.place([n * 4, rows * 4, rows * 4, rows * 4, n * 4]);
    const T = temperature;
    this.put(pl, logits, n);
    if (T !== 1) {
      const lBase = pl >> 2;
      for (let i = 0; i < n; i++) this.f32[lBase + i] /= T;
    }
    this.put(pt, targets, rows);
    const wBase = pw >> 2;
    for (let r = 0; r < rows; r++) this.f32[wBase + r] = weights[r] / T;
    this.args([OP_CE, rows, vocab, pl, pt, pw, pn, pd]);
    this.exec(rows, 6 * n);
    return { nll: this.take(pn, rows), dlogits: this.take(pd, n) };
  }
}

function defaultThreads(): number {
  const env = process.env.RMT_WASM_THREADS;
  if (env !== undefined && env !== '') {
    const t = Number(env);
    if (!Number.isInteger(t) || t < 1)
      throw new Error(`RMT_WASM_THREADS=${env}: expected a positive integer`);
    return Math.min(t, MAX_THREADS);
  }
  return Math.max(1, Math.min(availableParallelism(), MAX_THREADS));
}
