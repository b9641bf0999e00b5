/**
 * The WebAssembly SIMD ops of asm/ops.ts (attention forward/backward, cross-entropy, rmsnorm
 * forward/backward, rope, swiglu forward/backward, AdamW, sum of squares, add) behind plain
 * Float32Array calls with the kernel interface's semantics (shared/kernels/backend.ts), on every core
 * where the op is big enough.
 *
 * Like the matmul (matmul.ts), one process-wide instance owns a grow-once arena (arena.ts):
 *   [0, 64 KiB)        reserved (the module's own statics, if any)
 *   ARGS (256 bytes)   the parameter block of the current op (op id, sizes, byte addresses, scalars)
 *   resident           copies of attention's keys and values kept between calls (resident.ts), for
 *                      the backend's KV cache, which it changes only through `patchRows`
 *   inputs | outputs   the current call's operands, 64-byte aligned
 * A call copies its inputs in, writes the parameter block, runs `chunk(args, 0, units)` on the main
 * thread or splits the units between the main thread and the worker pool (pool.ts, job kind JOB_OP),
 * then copies the outputs out into fresh Float32Arrays. Op ids and the sum-of-squares block are read
 * from the module's exports, so they cannot drift from asm/ops.ts.
 *
 * Environment: RMT_WASM_THREADS caps the participants (as for the matmul); RMT_WASM_VARIANT picks the
 * build (loader.ts).
 */
import { type AttentionShape, checkTemperature } from '../backend.js';
import { type ArenaInput, align, defaultThreads, PAGE, WasmArena } from './arena.js';
import {
  type LoadedModule,
  loadOpsModule,
  type OpsExports,
  SharedInstance,
  type WasmVariant,
} from './loader.js';
import { JOB_OP, JOB_PARAMS, MAX_CHUNKS, POOL_SPIN, WorkerPool } from './pool.js';
import { ResidentSet } from './resident.js';

const ARGS = PAGE;
const ARGS_WORDS = 64;
const ARENA = ARGS + ARGS_WORDS * 4;
const WHAT = 'wasm ops';

/** Elements per AdamW call: 7 arrays of 2^24 floats are 448 MiB of wasm memory, far below its 4 GiB. */
export const ADAMW_CHUNK_ELEMENTS = 1 << 24;

/** Most bytes of resident keys and values: every layer's KV cache of the bench models many times over. */
const RESIDENT_CAP_BYTES = 256 * 2 ** 20;

/** Below this much work (about one unit per multiply-add or exp) an op runs on the main thread alone. */
export const OPS_PARALLEL_MIN_WORK = 1 << 18;
/** Chunks per participant when an op is split (a late or busy thread only delays its own share). */
const CHUNKS_PER_THREAD = 4;

export interface OpsRunOptions {
  /** Participants for the calls (1 = main thread only); default: by problem size. */
  threads?: number;
}

export class WasmOps {
  readonly variant: WasmVariant;
  private readonly arena = new WasmArena(2);
  private readonly ex: OpsExports;
  /** Op ids of asm/ops.ts, read from the module's exported globals. */
  private readonly op: OpIds;
  private readonly sumsqBlock: number;
  private readonly pool: WorkerPool | null;
  private readonly job = new Array<number>(JOB_PARAMS).fill(0);
  /** Forced participants (tests); null = by problem size. */
  forceThreads: number | null = null;
  private readonly resident: ResidentSet;

  private constructor(
    loaded: LoadedModule,
    /** Participants (main thread included). */
    readonly threads: number,
  ) {
    this.variant = loaded.variant;
    const { memory } = this.arena;
    this.ex = new WebAssembly.Instance(loaded.module, { env: { memory } }).exports as unknown as OpsExports;
    this.op = opIds(this.ex);
    this.sumsqBlock = exportedInt(this.ex, 'SUMSQ_BLOCK');
    this.resident = new ResidentSet(this.arena, ARENA, RESIDENT_CAP_BYTES);
    this.pool =
      threads > 1
        ? new WorkerPool(loaded.module, memory, threads - 1, { spin: POOL_SPIN, timeoutMs: 600_000 })
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
    return this.arena.bytes;
  }

  // -------------------------------------------------------------------------------------------------
  // plumbing

  /** Places regions of the given byte sizes after the resident copies; returns their addresses. */
  private place(bytes: number[]): number[] {
    const top = this.resident.top;
    if (top > ARENA) {
      let need = top;
      for (const n of bytes) need = align(need, 64) + n;
      // no room beside the resident copies: drop them (callers take addresses after placing)
      if (!this.arena.reserve(need)) this.resident.reset();
    }
    return this.arena.place(this.resident.top, bytes, WHAT);
  }

  /** Forgets the resident copy of x (freed, or about to change other than through `patchRows`). */
  release(x: Float32Array): void {
    this.resident.release(x);
  }

  /** Mirrors `writeRowsF32(x, src, index, dim)` (already done on x) into x's resident copy. */
  patchRows(x: Float32Array, src: Float32Array, index: Int32Array, dim: number): void {
    this.resident.patchRows(x, src, index, dim);
  }

  private put(ptr: number, x: ArenaInput, n: number): void {
    this.arena.put(ptr, x, n, WHAT);
  }

  /** A fresh Float32Array copy of n floats at ptr. */
  private take(ptr: number, n: number): Float32Array {
    return this.arena.take(ptr, n);
  }

  /** Writes the parameter block: integer words, then f32 words from `fAt`. */
  private args(words: number[], floats: number[] = [], fAt = words.length): void {
    const base = ARGS >> 2;
    const { i32, f32 } = this.arena;
    for (let i = 0; i < words.length; i++) i32[base + i] = words[i];
    for (let i = 0; i < floats.length; i++) f32[base + fAt + i] = floats[i];
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
    this.args([this.op.add, n, pa, pb, po]);
    this.exec(n, n, 64);
    return this.take(po, n);
  }

  swiglu(gate: Float32Array, up: Float32Array): Float32Array {
    const n = gate.length;
    const [pg, pu, po] = this.place([n * 4, n * 4, n * 4]);
    this.put(pg, gate, n);
    this.put(pu, up, n);
    this.args([this.op.swiglu, n, pg, pu, po]);
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
    this.args([this.op.swigluBwd, n, pd, pg, pu, pdg, pdu]);
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
    const out = { p: p.slice(), m: m.slice(), v: v.slice() };
    this.adamwInPlace(out.p, g, out.m, out.v, hp, chunk);
    return out;
  }

  /**
   * `adamw` written back into p, m and v (the same numbers): the kernel reads each element's
   * p, g, m, v before it writes them, so it runs over its inputs' copies, and no result array is made.
   * A large tensor goes in slices of `chunk` elements: seven arrays of Qwen3's 151936 x 1024
   * embedding pass the 4 GiB a wasm memory holds, and AdamW is per element, so slices (starting at
   * multiples of 4, so every element meets the same SIMD or tail code as whole) give the same numbers.
   */
  adamwInPlace(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    hp: ArrayLike<number>,
    chunk = ADAMW_CHUNK_ELEMENTS,
  ): void {
    const n = p.length;
    if (g.length < n || m.length < n || v.length < n)
      throw new RangeError(`adamw: g, m and v need ${n} elements each, as p`);
    const step = chunk - (chunk % 4) || 4;
    for (let s = 0; s < n; s += step) {
      // per element, so slices (at multiples of 4) give the same numbers as the whole
      const e = Math.min(n, s + step);
      const k = e - s;
      const [pp, pg, pm, pv] = this.place(new Array(4).fill(k * 4));
      this.put(pp, p.subarray(s, e), k);
      this.put(pg, g.subarray(s, e), k);
      this.put(pm, m.subarray(s, e), k);
      this.put(pv, v.subarray(s, e), k);
      this.args([this.op.adamw, k, pp, pg, pm, pv, pp, pm, pv, 0], Array.from(hp), 10);
      this.exec(k, 8 * k, 64);
      const f32 = this.arena.f32;
      p.set(f32.subarray(pp >> 2, (pp >> 2) + k), s);
      m.set(f32.subarray(pm >> 2, (pm >> 2) + k), s);
      v.set(f32.subarray(pv >> 2, (pv >> 2) + k), s);
    }
  }

  /** Sum of squares: f32 SIMD partials over blocks of 4096 elements, added in float64. */
  sumSquares(x: Float32Array): number {
    const n = x.length;
    if (n === 0) return 0;
    const blocks = Math.ceil(n / this.sumsqBlock);
    const [px, pp] = this.place([n * 4, blocks * 8]);
    this.put(px, x, n);
    this.args([this.op.sumsq, n, px, pp]);
    this.exec(blocks, n);
    let s = 0;
    const f64 = this.arena.f64;
    for (let i = 0; i < blocks; i++) s += f64[(pp >> 3) + i];
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
    this.args([this.op.rmsnorm, rows, dim, px, pw, py, pr], [eps], 7);
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
    this.args([this.op.rmsnormDx, rows, dim, pdy, px, pw, pr, pdx]);
    this.exec(rows, 5 * n);
    this.args([this.op.rmsnormDw, rows, dim, pdy, px, pr, pdw]);
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
    this.args([this.op.rope, rows, heads, headDim, px, pp, pc, ps, po], [sign], 9);
    this.exec(rows, 3 * n);
    return this.take(po, n);
  }

  // -------------------------------------------------------------------------------------------------
  // attention, cross-entropy

  private attnCheck(s: AttentionShape): void {
    if (s.heads % s.kvHeads !== 0) throw new RangeError('attention: heads must be a multiple of kvHeads');
  }

  /**
   * `resident`: keep k and v in wasm memory from their second use on (the backend's KV cache, which
   * changes only through `patchRows` and is released when freed).
   */
  attention(
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    s: AttentionShape,
    resident = false,
  ): { out: Float32Array; probs: Float32Array } {
    this.attnCheck(s);
    const { batch: B, tq, tk, heads: H, kvHeads: KV, headDim: hd } = s;
    const nq = B * tq * H * hd;
    const nk = B * tk * KV * hd;
    const nP = B * H * tq * tk;
    if (k.length < nk || v.length < nk) throw new RangeError(`attention: k and v need ${nk} elements each`);
    let rk = -1;
    let rv = -1;
    if (resident) {
      const res = this.resident;
      const gen = res.generation;
      rk = res.address(k, nk);
      rv = res.address(v, nk);
      if (res.generation !== gen) rk = -1;
    }
    const sizes = (kBytes: number, vBytes: number) => [nq * 4, kBytes, vBytes, B * tk, B * 4, nq * 4, nP * 4];
    const gen = this.resident.generation;
    let at = this.place(sizes(rk < 0 ? nk * 4 : 0, rv < 0 ? nk * 4 : 0));
    if (this.resident.generation !== gen) {
      // placing dropped the resident copies to make room: k and v go to the call's own area
      rk = rv = -1;
      at = this.place(sizes(nk * 4, nk * 4));
    }
    const [pq, , , pm, po, pout, pprobs] = at;
    const pk = rk >= 0 ? rk : at[1];
    const pv = rv >= 0 ? rv : at[2];
    this.put(pq, q, nq);
    if (rk < 0) this.put(pk, k, nk);
    if (rv < 0) this.put(pv, v, nk);
    this.put(pm, s.kValid, B * tk);
    this.put(po, s.qOffset, B);
    this.args(
      [this.op.attn, B, tq, tk, H, KV, hd, pq, pk, pv, pm, po, pout, pprobs],
      [1 / Math.sqrt(hd)],
      14,
    );
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
      [this.op.attnBwd, B, tq, tk, H, KV, hd, pdo, pq, pk, pv, pp, pm, po, pdq, pdk, pdv, 0, pw],
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
      const f32 = this.arena.f32;
      for (let i = 0; i < n; i++) f32[lBase + i] /= T;
    }
    this.put(pt, targets, rows);
    const wBase = pw >> 2;
    const f32 = this.arena.f32;
    for (let r = 0; r < rows; r++) f32[wBase + r] = weights[r] / T;
    this.args([this.op.ce, rows, vocab, pl, pt, pw, pn, pd]);
    this.exec(rows, 6 * n);
    return { nll: this.take(pn, rows), dlogits: this.take(pd, n) };
  }
}

const OP_EXPORTS = {
  add: 'OP_ADD',
  swiglu: 'OP_SWIGLU',
  swigluBwd: 'OP_SWIGLU_BWD',
  adamw: 'OP_ADAMW',
  sumsq: 'OP_SUMSQ',
  rmsnorm: 'OP_RMSNORM',
  rmsnormDx: 'OP_RMSNORM_DX',
  rmsnormDw: 'OP_RMSNORM_DW',
  rope: 'OP_ROPE',
  attn: 'OP_ATTN',
  attnBwd: 'OP_ATTN_BWD',
  ce: 'OP_CE',
} as const;

type OpIds = Record<keyof typeof OP_EXPORTS, number>;

/** An exported integer global of asm/ops.ts (AssemblyScript exports `export const` as a global). */
function exportedInt(ex: OpsExports, name: string): number {
  const g = (ex as unknown as Record<string, unknown>)[name];
  const v = g instanceof WebAssembly.Global ? g.value : undefined;
  if (!Number.isInteger(v))
    throw new Error(`the ops module exports no integer ${name}: rebuild it (npm run build:wasm)`);
  return v as number;
}

function opIds(ex: OpsExports): OpIds {
  const ids = {} as OpIds;
  for (const [key, name] of Object.entries(OP_EXPORTS)) ids[key as keyof OpIds] = exportedInt(ex, name);
  return ids;
}
